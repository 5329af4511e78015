import {
  ICellLike,
  INFEASIBLE_PREFIX,
  INotebookLike,
  JSONish,
  findCell,
  insertRunCell,
  insertionIndex,
  markInfeasible,
  markedSource,
  replaceSource
} from '../cells';
import { handleMessage } from '../comm';
import { VERSION } from '../version';
import pkg from '../../package.json';

/** In-memory stand-ins for ISharedCell / ISharedNotebook. */
class FakeCell implements ICellLike {
  constructor(
    readonly id: string,
    public source = '',
    public metadata: JSONish = {}
  ) {}
  history: string[] = [];
  getSource(): string {
    return this.source;
  }
  setSource(value: string): void {
    this.history.push(this.source);
    this.source = value;
  }
  getMetadata(key: string): unknown {
    return this.metadata[key];
  }
  setMetadata(key: string, value: any): void {
    this.metadata = { ...this.metadata, [key]: value };
  }
}

class FakeNotebook implements INotebookLike {
  constructor(public cells: FakeCell[]) {}
  transactions = 0;
  insertCell(
    index: number,
    cell: { cell_type: 'code'; source: string; metadata: JSONish }
  ): FakeCell {
    const created = new FakeCell(`new${index}`, cell.source, cell.metadata);
    this.cells.splice(index, 0, created);
    return created;
  }
  transact(f: () => void): void {
    this.transactions++;
    f();
  }
}

const run = (id: string, session: string, n: number) =>
  new FakeCell(id, `x = ${n}`, { autoresearch: { session, run: n } });
const ids = (nb: FakeNotebook) => nb.cells.map(c => c.id);

describe('insertionIndex', () => {
  it('goes directly below the anchor when there is no block', () => {
    const cells = [
      new FakeCell('a'),
      new FakeCell('anchor'),
      new FakeCell('u')
    ];
    expect(insertionIndex(cells, 1, 's')).toBe(2);
  });

  it('goes after an existing block of the same session (run order)', () => {
    const cells = [
      new FakeCell('anchor'),
      run('r1', 's', 1),
      run('r2', 's', 2),
      new FakeCell('user')
    ];
    expect(insertionIndex(cells, 0, 's')).toBe(3);
  });

  it('stops at a user cell interrupting the block', () => {
    const cells = [
      new FakeCell('anchor'),
      run('r1', 's', 1),
      new FakeCell('user'),
      run('r2', 's', 2)
    ];
    expect(insertionIndex(cells, 0, 's')).toBe(2);
  });

  it('does not extend over another session', () => {
    const cells = [new FakeCell('anchor'), run('o1', 'other', 1)];
    expect(insertionIndex(cells, 0, 's')).toBe(1);
  });

  it('appends at the end when the block reaches the end', () => {
    const cells = [new FakeCell('anchor'), run('r1', 's', 1)];
    expect(insertionIndex(cells, 0, 's')).toBe(2);
  });
});

describe('findCell / insertRunCell', () => {
  it('finds the anchor in any notebook and inserts in run order', () => {
    const other = new FakeNotebook([new FakeCell('x')]);
    const nb = new FakeNotebook([
      new FakeCell('anchor'),
      run('r1', 's', 1),
      new FakeCell('user')
    ]);
    const found = findCell([other, nb], 'anchor');
    expect(found?.notebook).toBe(nb);
    const meta = { autoresearch: { session: 's', run: 2 } };
    const index = insertRunCell(nb, found!.index, 's', 'x = 2', meta);
    expect(index).toBe(2);
    expect(ids(nb)).toEqual(['anchor', 'r1', 'new2', 'user']);
    expect(nb.cells[2].source).toBe('x = 2');
    expect(nb.cells[2].metadata).toEqual(meta);
  });

  it('prefers the first notebook when ids are duplicated', () => {
    const a = new FakeNotebook([new FakeCell('anchor')]);
    const b = new FakeNotebook([new FakeCell('anchor')]);
    expect(findCell([a, b], 'anchor')?.notebook).toBe(a);
  });

  it('returns null for a missing anchor', () => {
    expect(findCell([new FakeNotebook([new FakeCell('a')])], 'zz')).toBeNull();
  });
});

describe('markInfeasible', () => {
  it('marks matching cells once, without deleting anything', () => {
    const nb = new FakeNotebook([
      new FakeCell('anchor'),
      run('r1', 's', 1),
      run('r2', 's', 2),
      run('o2', 'other', 2)
    ]);
    expect(markInfeasible(nb, 's', 2, 'solver diverged')).toBe(1);
    const cell = nb.cells[2];
    expect(cell.source).toBe(`${INFEASIBLE_PREFIX} solver diverged\nx = 2`);
    expect(cell.metadata.autoresearch).toEqual({
      session: 's',
      run: 2,
      infeasible: 'solver diverged'
    });
    // Idempotent: same result, no further edit.
    expect(markInfeasible(nb, 's', 2, 'solver diverged')).toBe(1);
    expect(cell.source).toBe(`${INFEASIBLE_PREFIX} solver diverged\nx = 2`);
    expect(cell.history).toHaveLength(1);
    expect(ids(nb)).toEqual(['anchor', 'r1', 'r2', 'o2']);
    expect(nb.cells[3].source).toBe('x = 2');
  });

  it('counts zero when nothing matches', () => {
    const nb = new FakeNotebook([run('r1', 's', 1)]);
    expect(markInfeasible(nb, 's', 9, 'n')).toBe(0);
  });

  it('updates the marker line for a new note and keeps it one line', () => {
    const marked = markedSource('y = 1', 'first');
    expect(markedSource(marked, 'a\nb')).toBe(
      `${INFEASIBLE_PREFIX} a b\ny = 1`
    );
    expect(markedSource('', 'n')).toBe(`${INFEASIBLE_PREFIX} n\n`);
  });
});

describe('replaceSource', () => {
  it('replaces the source exactly, through setSource', () => {
    const cell = new FakeCell('anchor', '%%autoresearch\nold()');
    replaceSource(cell, 'new()');
    expect(cell.source).toBe('new()');
    expect(cell.history).toEqual(['%%autoresearch\nold()']);
    replaceSource(cell, 'new()'); // unchanged source: no extra undo step
    expect(cell.history).toHaveLength(1);
  });
});

describe('handleMessage', () => {
  const nb = () =>
    new FakeNotebook([new FakeCell('anchor', '%%autoresearch\nf()')]);

  it('acks hello with the extension version', () => {
    expect(handleMessage({ type: 'hello', request: 'r' }, () => [])).toEqual({
      type: 'ack',
      request: 'r',
      ok: true,
      version: VERSION
    });
  });

  it('inserts, marks and replaces', () => {
    const book = nb();
    const meta = { autoresearch: { session: 's', run: 1 } };
    const common = { anchor_cell_id: 'anchor', session: 's', run: 1 };
    expect(
      handleMessage(
        {
          type: 'insert',
          request: 'i',
          source: 'g()',
          metadata: meta,
          ...common
        },
        () => [book]
      )
    ).toEqual({ type: 'ack', request: 'i', ok: true, index: 1 });
    expect(
      handleMessage(
        { type: 'mark', request: 'm', note: 'n', ...common },
        () => [book]
      )
    ).toEqual({ type: 'ack', request: 'm', ok: true, count: 1 });
    expect(
      handleMessage(
        {
          type: 'replace',
          request: 'p',
          anchor_cell_id: 'anchor',
          source: 'h()'
        },
        () => [book]
      )
    ).toEqual({ type: 'ack', request: 'p', ok: true });
    expect(book.cells.map(c => c.source)).toEqual([
      'h()',
      `${INFEASIBLE_PREFIX} n\ng()`
    ]);
  });

  it('reports a missing anchor as ok: false', () => {
    const ack = handleMessage(
      { type: 'replace', request: 'p', anchor_cell_id: 'nope', source: '' },
      () => [nb()]
    );
    expect(ack?.ok).toBe(false);
    expect(ack?.error).toMatch(/not found/);
  });

  it('acknowledges open requests (the caller opens the document)', () => {
    expect(
      handleMessage({ type: 'open', request: 'o1', path: 'best.ipynb' }, () => [])
    ).toEqual({ type: 'ack', request: 'o1', ok: true });
  });

  it('does not reply to state, result, or unknown messages without request', () => {
    expect(
      handleMessage({ type: 'state', session: 's', best: null }, () => [])
    ).toBeNull();
    expect(
      handleMessage(
        { type: 'result', ok: true, message: 'done', request: 'r9' } as any,
        () => []
      )
    ).toBeNull();
    expect(handleMessage({ type: 'bogus' } as any, () => [])).toBeNull();
    expect(
      handleMessage({ type: 'bogus', request: 'b' } as any, () => [])?.ok
    ).toBe(false);
  });
});

describe('version', () => {
  it('matches package.json', () => {
    expect(VERSION).toBe(pkg.version);
  });
});
