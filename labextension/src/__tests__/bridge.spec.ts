import { readFileSync } from 'fs';
import { join } from 'path';

import { ICommLike, IKernelLike, IPageHost, PageBridge } from '../bridge';
import { COMM_TARGET, PageMessage, parseKernelMessage } from '../comm';
import { VERSION } from '../version';
import { FakeCell, FakeNotebook } from './fakes';

/** The exchange pytest checks too (tests/test_bridge.py). */
const GOLDEN = JSON.parse(
  readFileSync(
    join(__dirname, '..', '..', '..', 'tests', 'files', 'bridge_messages.json'),
    'utf-8'
  )
);

class FakeComm implements ICommLike {
  constructor(readonly commId: string) {}
  isDisposed = false;
  sent: PageMessage[] = [];
  onMsg: ICommLike['onMsg'] = () => undefined;
  send(data: PageMessage): void {
    this.sent.push(JSON.parse(JSON.stringify(data)));
  }
  deliver(data: unknown): void {
    void this.onMsg({ content: { data } });
  }
}

/** One connection to a kernel; `open` lists the comms the kernel has open. */
class FakeKernel implements IKernelLike {
  constructor(
    readonly id: string,
    public open: string[] = []
  ) {}
  isDisposed = false;
  comms = new Map<string, FakeComm>();
  private _target?: Parameters<IKernelLike['registerCommTarget']>[1];
  registerCommTarget(
    target: string,
    callback: Parameters<IKernelLike['registerCommTarget']>[1]
  ): void {
    expect(target).toBe(COMM_TARGET);
    this._target = callback;
  }
  async requestCommInfo(content: { target_name: string }) {
    expect(content.target_name).toBe(COMM_TARGET);
    const comms: { [id: string]: unknown } = {};
    this.open.forEach(id => (comms[id] = { target_name: COMM_TARGET }));
    return { content: { status: 'ok', comms } };
  }
  hasComm(commId: string): boolean {
    return this.comms.has(commId);
  }
  createComm(target: string, commId: string): FakeComm {
    const comm = new FakeComm(commId);
    this.comms.set(commId, comm);
    return comm;
  }
  /** The kernel opens a comm (`%load_ext`): every connection sees it. */
  kernelOpens(commId: string): FakeComm {
    this.open.push(commId);
    const comm = this.createComm(COMM_TARGET, commId);
    this._target!(comm, { content: { data: { type: 'hello' } } });
    return comm;
  }
}

/** A host with one notebook attached to kernel `k`. */
function host(notebook: FakeNotebook) {
  const calls = {
    saved: 0,
    opened: [] as string[],
    results: [] as [boolean, string][]
  };
  const page: IPageHost<FakeNotebook> = {
    notebooks: kernelId => ({
      own: kernelId === 'k' ? [notebook] : [],
      other: kernelId === 'k' ? [] : [notebook]
    }),
    save: async () => {
      calls.saved++;
    },
    open: async path => {
      calls.opened.push(path);
    },
    result: (ok, message) => calls.results.push([ok, message]),
    changed: () => undefined
  };
  return { page, calls };
}

const settle = () => new Promise(resolve => setTimeout(resolve, 0));
const edit = (request: string, page: string, run: number) => ({
  type: 'insert',
  request,
  page,
  anchor_cell_id: 'anchor',
  session: 's',
  run,
  source: `x = ${run}\n`,
  metadata: { autoresearch: { session: 's', run } }
});

describe('the golden exchange', () => {
  it('answers every kernel message as pytest expects', async () => {
    expect(GOLDEN.version).toBe(VERSION);
    const notebook = new FakeNotebook(
      GOLDEN.notebook.map(
        (c: { id: string; source: string; metadata: object }) =>
          new FakeCell(c.id, c.source, c.metadata)
      )
    );
    const { page, calls } = host(notebook);
    const bridge = new PageBridge(GOLDEN.page, VERSION, page);
    const kernel = new FakeKernel('k');
    bridge.watch(kernel);
    const [hello, ...rest] = GOLDEN.exchanges;
    const comm = kernel.kernelOpens('c1');
    expect(parseKernelMessage(hello.kernel)).toEqual(hello.kernel);
    expect(comm.sent).toEqual([hello.page]);
    for (const exchange of rest) {
      comm.sent = [];
      if (exchange.page?.type === 'export') {
        expect(bridge.export('k', exchange.page.to, exchange.page.arg)).toBe(
          true
        );
        expect(comm.sent).toEqual([exchange.page]);
        comm.deliver(exchange.kernel);
        expect(calls.results).toEqual([[true, exchange.kernel.message]]);
        continue;
      }
      expect(parseKernelMessage(exchange.kernel)).toEqual(exchange.kernel);
      comm.deliver(exchange.kernel);
      await settle();
      expect(comm.sent).toEqual(exchange.page ? [exchange.page] : []);
    }
    expect(
      notebook.cells.map(c => ({
        id: c.id.startsWith('new') ? null : c.id,
        source: c.source
      }))
    ).toEqual(GOLDEN.notebook_after);
    expect(calls.opened).toEqual(['s_best.ipynb']);
    expect(calls.saved).toBe(3); // insert, mark, replace; not the duplicate insert
    expect(bridge.state('k')).toEqual(
      GOLDEN.exchanges.find(
        (e: { kernel: { type: string } }) => e.kernel.type === 'state'
      ).kernel
    );
  });

  it('refuses malformed kernel messages', () => {
    for (const bad of [
      null,
      [],
      'insert',
      { type: 'nope' },
      { type: 'insert', request: 'r', page: 'p' },
      { ...edit('r', 'p', 2), run: '2' },
      { ...edit('r', 'p', 2), metadata: [] },
      { type: 'state', session: 's', best: 3 },
      { type: 'result', request: 'r', page: 'p', ok: 'yes', message: '' }
    ]) {
      expect(parseKernelMessage(bad)).toBeNull();
    }
  });
});

describe('PageBridge', () => {
  const notebook = () => new FakeNotebook([new FakeCell('anchor')]);

  it('finds the comm again after a reload and attaches as the live page', async () => {
    const nb = notebook();
    const before = new PageBridge('old', VERSION, host(nb).page);
    const first = new FakeKernel('k');
    before.watch(first);
    const comm = first.kernelOpens('c1');
    expect(comm.sent).toEqual([{ type: 'attach', page: 'old', version: VERSION }]);

    // The reload: a new page, a new connection to the same kernel; no comm_open.
    const after = new PageBridge('new', VERSION, host(nb).page);
    const second = new FakeKernel('k', ['c1']);
    after.watch(second);
    await settle();
    const found = second.comms.get('c1')!;
    expect(found.sent).toEqual([{ type: 'attach', page: 'new', version: VERSION }]);
    expect(after.has('k')).toBe(true);

    // An edit still addressed to the old page is not applied by the new one.
    found.deliver(edit('r1', 'old', 2));
    found.deliver(edit('r2', 'new', 3));
    await settle();
    expect(found.sent.slice(1)).toEqual([
      { type: 'ack', request: 'r2', ok: true, index: 1, created: true }
    ]);
    expect(nb.cells.map(c => c.source)).toEqual(['', 'x = 3\n']);
  });

  it('serves each edit once however many connections share the kernel', async () => {
    const nb = notebook();
    const bridge = new PageBridge('p', VERSION, host(nb).page);
    const notebookConnection = new FakeKernel('k');
    const consoleConnection = new FakeKernel('k');
    bridge.watch(notebookConnection);
    bridge.watch(consoleConnection);
    const a = notebookConnection.kernelOpens('c1');
    const b = consoleConnection.kernelOpens('c1');
    expect(a.sent.length + b.sent.length).toBe(1); // one attach
    a.deliver(edit('r1', 'p', 2));
    b.deliver(edit('r1', 'p', 2));
    await settle();
    expect(nb.cells).toHaveLength(2);
    expect(a.sent.filter(m => m.type === 'ack')).toHaveLength(1);
    expect(b.sent.filter(m => m.type === 'ack')).toHaveLength(0);

    // The notebook closes: its connection's copy goes, the console's serves.
    a.isDisposed = true;
    b.deliver(edit('r2', 'p', 3));
    await settle();
    expect(b.sent).toEqual([
      { type: 'ack', request: 'r2', ok: true, index: 2, created: true }
    ]);
  });

  it('acknowledges an edit only after the notebook is saved, in order', async () => {
    const nb = notebook();
    const { page } = host(nb);
    const order: string[] = [];
    let release: () => void = () => undefined;
    page.save = () =>
      new Promise<void>(resolve => {
        order.push('save');
        release = () => {
          order.push('saved');
          resolve();
        };
      });
    const bridge = new PageBridge('p', VERSION, page);
    const kernel = new FakeKernel('k');
    bridge.watch(kernel);
    const comm = kernel.kernelOpens('c1');
    comm.sent = [];
    comm.deliver(edit('r1', 'p', 2));
    comm.deliver(edit('r2', 'p', 3));
    await settle();
    expect(comm.sent).toEqual([]); // still saving run 2; run 3 waits its turn
    expect(nb.cells).toHaveLength(2);
    release();
    await settle();
    expect(comm.sent.map(m => m.type === 'ack' && m.request)).toEqual(['r1']);
    release();
    await settle();
    expect(comm.sent.map(m => m.type === 'ack' && m.request)).toEqual([
      'r1',
      'r2'
    ]);
    expect(order).toEqual(['save', 'saved', 'save', 'saved']);
  });

  it('marks cells wherever they are in the kernel notebooks only', async () => {
    const own = new FakeNotebook([
      new FakeCell('a'),
      new FakeCell('u'),
      new FakeCell('v', 'x = 2', { autoresearch: { session: 's', run: 2 } })
    ]);
    const copy = new FakeNotebook([
      new FakeCell('w', 'x = 2', { autoresearch: { session: 's', run: 2 } })
    ]);
    const { page } = host(own);
    page.notebooks = () => ({ own: [own], other: [copy] });
    const bridge = new PageBridge('p', VERSION, page);
    const kernel = new FakeKernel('k');
    bridge.watch(kernel);
    const comm = kernel.kernelOpens('c1');
    comm.deliver({
      type: 'mark',
      request: 'm',
      page: 'p',
      session: 's',
      run: 2,
      note: 'too dear'
    });
    await settle();
    expect(comm.sent[1]).toEqual({ type: 'ack', request: 'm', ok: true, count: 1 });
    expect(own.cells[2].source).toMatch(/^# autoresearch: INFEASIBLE: too dear/);
    expect(copy.cells[0].source).toBe('x = 2');
  });

  it('re-attaches every comm when asked (the page became visible)', () => {
    const bridge = new PageBridge('p', VERSION, host(notebook()).page);
    const kernel = new FakeKernel('k');
    bridge.watch(kernel);
    const comm = kernel.kernelOpens('c1');
    bridge.attachAll();
    expect(comm.sent.map(m => m.type)).toEqual(['attach', 'attach']);
  });
});
