/**
 * The comm protocol between the kernel (`notebook/_bridge.py`) and this
 * extension, and the edits it asks for, applied to notebook models. Free of
 * JupyterLab imports so jest can exercise it directly; one exchange of every
 * message is in `tests/files/bridge_messages.json`, checked on both sides.
 */
import {
  INotebookLike,
  JSONish,
  findCell,
  findRunCell,
  insertRunCell,
  markInfeasible,
  replaceSource
} from './cells';

/** Comm target name; the kernel opens the comm. */
export const COMM_TARGET = 'jupyter-autoresearch';

// -- kernel -> page -----------------------------------------------------------

/** Sent when the kernel opens the comm: every page with the extension attaches. */
export interface IHello {
  type: 'hello';
}

/** Fields of every edit: the request to acknowledge and the page it is for. */
interface IEditBase {
  request: string;
  page: string;
}

/** Insert a run's cell below the anchor, in run order, once. */
export interface IInsert extends IEditBase {
  type: 'insert';
  anchor_cell_id: string;
  session: string;
  run: number;
  source: string;
  metadata: JSONish;
}

/** Mark every cell of a run infeasible, wherever it is. */
export interface IMark extends IEditBase {
  type: 'mark';
  session: string;
  run: number;
  note: string;
}

/** Replace the anchor cell's source. */
export interface IReplace extends IEditBase {
  type: 'replace';
  anchor_cell_id: string;
  source: string;
}

/** Open a document, the path relative to the kernel's notebook. */
export interface IOpen extends IEditBase {
  type: 'open';
  path: string;
}

/** The best run of a session (no reply). */
export interface IState {
  type: 'state';
  session: string;
  best: { run: number; metric: number | null } | null;
}

/** The outcome of an export this page asked for (no reply). */
export interface IResult {
  type: 'result';
  request: string;
  page: string;
  ok: boolean;
  message: string;
}

export type Edit = IInsert | IMark | IReplace | IOpen;
export type KernelMessage = IHello | Edit | IState | IResult;

// -- page -> kernel -----------------------------------------------------------

/** "This page is live": on comm open, on finding the comm again, on becoming visible. */
export interface IAttach {
  type: 'attach';
  page: string;
  version: string;
  [key: string]: string;
}

/**
 * The outcome of one edit: `ok`, plus `index` and `created` (insert),
 * `count` (mark) or `error`. A plain JSON object for `comm.send`.
 */
export type IAck = { type: 'ack'; request: string; ok: boolean } & {
  [key: string]: string | number | boolean;
};

/** Export targets understood by the kernel. */
export type ExportTarget = 'cell' | 'replace' | 'file' | 'notebook' | 'branch';

/** An export asked for from the command palette. */
export interface IExportRequest {
  type: 'export';
  request: string;
  page: string;
  to: ExportTarget;
  arg: string;
  [key: string]: string;
}

export type PageMessage = IAttach | IAck | IExportRequest;

// -- decoding -----------------------------------------------------------------

type Check = 'string' | 'number' | 'boolean' | 'object';

/** The fields each kernel message must have, with their types. */
const FIELDS: { [K in KernelMessage['type']]: { [field: string]: Check } } = {
  hello: {},
  insert: {
    request: 'string',
    page: 'string',
    anchor_cell_id: 'string',
    session: 'string',
    run: 'number',
    source: 'string',
    metadata: 'object'
  },
  mark: {
    request: 'string',
    page: 'string',
    session: 'string',
    run: 'number',
    note: 'string'
  },
  replace: {
    request: 'string',
    page: 'string',
    anchor_cell_id: 'string',
    source: 'string'
  },
  open: { request: 'string', page: 'string', path: 'string' },
  state: { session: 'string' },
  result: {
    request: 'string',
    page: 'string',
    ok: 'boolean',
    message: 'string'
  }
};

/** The typed kernel message in `data`, or null when it is malformed. */
export function parseKernelMessage(data: unknown): KernelMessage | null {
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    return null;
  }
  const record = data as { [key: string]: unknown };
  const type = record.type;
  if (
    typeof type !== 'string' ||
    !Object.prototype.hasOwnProperty.call(FIELDS, type)
  ) {
    return null;
  }
  const fields = FIELDS[type as KernelMessage['type']];
  for (const [name, check] of Object.entries(fields)) {
    const value = record[name];
    const ok =
      check === 'object'
        ? !!value && typeof value === 'object' && !Array.isArray(value)
        : typeof value === check;
    if (!ok) {
      return null;
    }
  }
  if (type === 'state' && record.best !== null && typeof record.best !== 'object') {
    return null;
  }
  return data as KernelMessage;
}

// -- applying edits -----------------------------------------------------------

/** Where to look: the notebooks of the messaging kernel, then the others. */
export interface INotebooks<N extends INotebookLike = INotebookLike> {
  own: N[];
  other: N[];
}

/** An edit's ack, and the notebook it changed (to save), if any. */
export interface IApplied<N extends INotebookLike> {
  ack: IAck;
  changed: N | null;
}

/**
 * Apply an insert, mark or replace. Never throws: errors become `ok: false`
 * acks, and the kernel sends the edit again when a page attaches. An insert
 * of a run whose cell is already in the notebook changes nothing, so an edit
 * that arrives twice (after a reload) is applied once. `open` is left to the
 * caller, which can reach the document manager.
 */
export function applyEdit<N extends INotebookLike>(
  msg: IInsert | IMark | IReplace,
  notebooks: INotebooks<N>
): IApplied<N> {
  const request = msg.request;
  const fail = (error: string): IApplied<N> => ({
    ack: { type: 'ack', request, ok: false, error },
    changed: null
  });
  try {
    if (msg.type === 'mark') {
      // Every notebook of the kernel: the run's cells may sit below any cell.
      let count = 0;
      let changed: N | null = null;
      for (const notebook of notebooks.own) {
        const marked = markInfeasible(notebook, msg.session, msg.run, msg.note);
        count += marked;
        changed = marked ? notebook : changed;
      }
      return { ack: { type: 'ack', request, ok: true, count }, changed };
    }
    const found = findCell(
      [...notebooks.own, ...notebooks.other],
      msg.anchor_cell_id
    );
    if (!found) {
      return fail(
        `the benchmark cell ${msg.anchor_cell_id} is not in an open notebook`
      );
    }
    if (msg.type === 'replace') {
      replaceSource(found.notebook.cells[found.index], msg.source);
      return {
        ack: { type: 'ack', request, ok: true },
        changed: found.notebook
      };
    }
    const existing = findRunCell(found.notebook, msg.session, msg.run);
    if (existing >= 0) {
      return {
        ack: { type: 'ack', request, ok: true, index: existing, created: false },
        changed: null
      };
    }
    const index = insertRunCell(
      found.notebook,
      found.index,
      msg.session,
      msg.run,
      msg.source,
      msg.metadata
    );
    return {
      ack: { type: 'ack', request, ok: true, index, created: true },
      changed: found.notebook
    };
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
}
