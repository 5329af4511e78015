import {
  INFEASIBLE_PREFIX,
  findCell,
  insertRunCell,
  insertionIndex,
  markInfeasible,
  markedSource,
  replaceSource
} from '../cells';
import { VERSION } from '../version';
import pkg from '../../package.json';
import { FakeCell, FakeNotebook } from './fakes';

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
    expect(insertionIndex(cells, 1, 's', 1)).toBe(2);
  });

  it('goes after an existing block of the same session (run order)', () => {
    const cells = [
      new FakeCell('anchor'),
      run('r1', 's', 1),
      run('r2', 's', 2),
      new FakeCell('user')
    ];
    expect(insertionIndex(cells, 0, 's', 3)).toBe(3);
  });

  it('stops at a user cell interrupting the block', () => {
    const cells = [
      new FakeCell('anchor'),
      run('r1', 's', 1),
      new FakeCell('user'),
      run('r2', 's', 2)
    ];
    expect(insertionIndex(cells, 0, 's', 3)).toBe(2);
  });

  it('does not extend over another session', () => {
    const cells = [new FakeCell('anchor'), run('o1', 'other', 1)];
    expect(insertionIndex(cells, 0, 's', 2)).toBe(1);
  });

  it('appends at the end when the block reaches the end', () => {
    const cells = [new FakeCell('anchor'), run('r1', 's', 1)];
    expect(insertionIndex(cells, 0, 's', 2)).toBe(2);
  });

  it('keeps run order when an earlier run arrives late', () => {
    const cells = [
      new FakeCell('anchor'),
      run('r2', 's', 2),
      run('r5', 's', 5),
      new FakeCell('user')
    ];
    expect(insertionIndex(cells, 0, 's', 3)).toBe(2);
    expect(insertionIndex(cells, 0, 's', 1)).toBe(1);
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
    const index = insertRunCell(nb, found!.index, 's', 2, 'x = 2', meta);
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

describe('version', () => {
  it('matches package.json', () => {
    expect(VERSION).toBe(pkg.version);
  });
});
