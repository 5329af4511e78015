/**
 * Pure notebook-editing logic, written against the small subset of
 * `@jupyter/ydoc`'s ISharedNotebook / ISharedCell that we use, so it can be
 * unit-tested in jest without a browser or a JupyterLab instance.
 */

/** JSON object as stored in cell metadata. */
export type JSONish = { [key: string]: any };

/** The part of `ISharedCell` this module needs. */
export interface ICellLike {
  readonly id: string;
  getSource(): string;
  setSource(value: string): void;
  getMetadata(key: string): unknown;
  setMetadata(key: string, value: any): void;
}

/** The part of `ISharedNotebook` this module needs. */
export interface INotebookLike {
  readonly cells: readonly ICellLike[];
  insertCell(
    index: number,
    cell: { cell_type: 'code'; source: string; metadata: JSONish }
  ): unknown;
  /** Groups several edits into one change (one undo step). */
  transact(f: () => void): void;
}

/** The first source line of a cell marked infeasible. */
export const INFEASIBLE_PREFIX = '# autoresearch: INFEASIBLE:';

/** A located cell: the notebook holding it and its index there. */
export interface ILocated<N extends INotebookLike> {
  notebook: N;
  index: number;
}

/**
 * Find the notebook containing the cell with `cellId`.
 *
 * Notebooks are searched in the given order, so callers put the notebooks
 * attached to the messaging kernel first: a duplicated notebook keeps its
 * cell ids, and the kernel's own notebook must win that tie.
 */
export function findCell<N extends INotebookLike>(
  notebooks: Iterable<N>,
  cellId: string
): ILocated<N> | null {
  for (const notebook of notebooks) {
    const index = notebook.cells.findIndex(c => c.id === cellId);
    if (index >= 0) {
      return { notebook, index };
    }
  }
  return null;
}

/** `metadata.autoresearch` of a cell, or undefined. */
export function autoresearchMeta(cell: ICellLike): JSONish | undefined {
  const meta = cell.getMetadata('autoresearch');
  return meta && typeof meta === 'object' && !Array.isArray(meta)
    ? (meta as JSONish)
    : undefined;
}

/**
 * Index at which a run of `session` goes: in the contiguous block of that
 * session's cells directly below the anchor, before the first cell of a later
 * run (run order, even when an earlier run arrives late), else at the end of
 * the block. A user cell interrupting the block ends it, so runs never jump
 * over user cells.
 */
export function insertionIndex(
  cells: readonly ICellLike[],
  anchorIndex: number,
  session: string,
  run: number
): number {
  let i = anchorIndex + 1;
  while (i < cells.length) {
    const meta = autoresearchMeta(cells[i]);
    if (meta?.session !== session || (typeof meta.run === 'number' && meta.run > run)) {
      break;
    }
    i++;
  }
  return i;
}

/** Index of the first cell of `session`/`run` in the notebook, or -1. */
export function findRunCell(
  notebook: INotebookLike,
  session: string,
  run: number
): number {
  return notebook.cells.findIndex(c => {
    const meta = autoresearchMeta(c);
    return meta?.session === session && meta?.run === run;
  });
}

/**
 * Insert a code cell for a run below the anchor (see `insertionIndex`).
 * Returns the index of the new cell.
 */
export function insertRunCell(
  notebook: INotebookLike,
  anchorIndex: number,
  session: string,
  run: number,
  source: string,
  metadata: JSONish
): number {
  const index = insertionIndex(notebook.cells, anchorIndex, session, run);
  notebook.insertCell(index, { cell_type: 'code', source, metadata });
  return index;
}

/** The source with a single `INFEASIBLE` first line carrying `note`. */
export function markedSource(source: string, note: string): string {
  // The marker is a Python comment: it must stay on one line.
  const line = `${INFEASIBLE_PREFIX} ${note.replace(/\s*[\r\n]+\s*/g, ' ')}`;
  if (source.startsWith(INFEASIBLE_PREFIX)) {
    const eol = source.indexOf('\n');
    return eol < 0 ? line : line + source.slice(eol);
  }
  return `${line}\n${source}`;
}

/**
 * Mark every cell of `session`/`run` infeasible: metadata
 * `autoresearch.infeasible = note` plus a comment first line. Never deletes
 * and is idempotent. Returns the number of matching cells.
 */
export function markInfeasible(
  notebook: INotebookLike,
  session: string,
  run: number,
  note: string
): number {
  const targets = notebook.cells.filter(c => {
    const meta = autoresearchMeta(c);
    return meta?.session === session && meta?.run === run;
  });
  notebook.transact(() => {
    for (const cell of targets) {
      const meta = autoresearchMeta(cell) ?? {};
      if (meta.infeasible !== note) {
        cell.setMetadata('autoresearch', { ...meta, infeasible: note });
      }
      const source = cell.getSource();
      const marked = markedSource(source, note);
      if (marked !== source) {
        cell.setSource(marked);
      }
    }
  });
  return targets.length;
}

/**
 * Replace a cell's source. Going through the shared model (not the editor)
 * records the change in the cell's undo history, so Ctrl+Z restores it.
 */
export function replaceSource(cell: ICellLike, source: string): void {
  if (cell.getSource() !== source) {
    cell.setSource(source);
  }
}
