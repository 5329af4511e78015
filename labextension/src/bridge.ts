/**
 * This page's end of the comm: finds the kernel's comm (when the kernel opens
 * it, or again after a reload or a reopened notebook), attaches, applies the
 * kernel's edits in order, saves the notebook and acknowledges each edit.
 *
 * Written against the few kernel and comm members it uses, so jest can drive
 * it with fakes; `index.ts` passes JupyterLab's kernel connections.
 */
import { INotebookLike } from './cells';
import {
  COMM_TARGET,
  Edit,
  ExportTarget,
  IAck,
  IExportRequest,
  INotebooks,
  IState,
  PageMessage,
  applyEdit,
  parseKernelMessage
} from './comm';

/** The part of `Kernel.IComm` used here. */
export interface ICommLike {
  readonly commId: string;
  readonly isDisposed: boolean;
  send(data: PageMessage): unknown;
  onMsg: (msg: { content: { data: unknown } }) => void | PromiseLike<void>;
}

/** The part of `Kernel.IKernelConnection` used here. */
export interface IKernelLike {
  readonly id: string;
  readonly isDisposed: boolean;
  registerCommTarget(
    target: string,
    callback: (comm: ICommLike, msg: { content: { data: unknown } }) => void
  ): void;
  requestCommInfo(content: {
    target_name: string;
  }): Promise<{ content: { status: string; comms?: { [id: string]: unknown } } }>;
  hasComm(commId: string): boolean;
  createComm(target: string, commId: string): ICommLike;
}

/** What the bridge needs from the application. */
export interface IPageHost<N extends INotebookLike> {
  /** The open notebooks, those attached to `kernelId` first. */
  notebooks(kernelId: string): INotebooks<N>;
  /** Save a notebook the kernel changed (when the user's autosave is on). */
  save(notebook: N): Promise<void>;
  /** Open a document given relative to the kernel's notebook. */
  open(path: string, kernelId: string): Promise<void>;
  /** The outcome of an export this page asked for. */
  result(ok: boolean, message: string): void;
  /** A session's best changed, or comms came or went. */
  changed(): void;
}

/** One kernel's comm as seen by this page: every connection's copy of it. */
interface IKernelComm {
  kernelId: string;
  copies: ICommLike[];
  queue: Promise<void>;
}

export class PageBridge<N extends INotebookLike> {
  /**
   * @param page - this page's id, unique per page load.
   * @param version - the extension's version, sent when attaching.
   */
  constructor(
    readonly page: string,
    readonly version: string,
    private _host: IPageHost<N>
  ) {}

  /** Follow a kernel connection: its comm now, and when the kernel opens one. */
  watch(kernel: IKernelLike | null | undefined): void {
    if (!kernel || kernel.isDisposed || this._watched.has(kernel)) {
      return;
    }
    this._watched.add(kernel);
    kernel.registerCommTarget(COMM_TARGET, (comm, msg) => {
      this._add(kernel.id, comm);
      this._receive(comm, msg.content.data);
    });
    void this.discover(kernel);
  }

  /** Find the kernel's open comm (after a reload or a reopened notebook) and attach. */
  async discover(kernel: IKernelLike): Promise<void> {
    let reply;
    try {
      reply = await kernel.requestCommInfo({ target_name: COMM_TARGET });
    } catch {
      return; // the kernel went away
    }
    if (reply.content.status !== 'ok' || kernel.isDisposed) {
      return;
    }
    for (const commId of Object.keys(reply.content.comms ?? {})) {
      if (kernel.hasComm(commId)) {
        continue; // this connection has it already
      }
      const comm = kernel.createComm(COMM_TARGET, commId);
      if (this._add(kernel.id, comm)) {
        this._attach(comm);
      }
    }
  }

  /** Tell every kernel that this page is the live one (it became visible). */
  attachAll(): void {
    for (const entry of this._comms.values()) {
      const comm = this._primary(entry);
      if (comm) {
        this._attach(comm);
      }
    }
  }

  /** The live comm of a kernel, if this page has one. */
  has(kernelId: string | undefined): boolean {
    return this._byKernel(kernelId) !== null;
  }

  /** The last best reported by a kernel. */
  state(kernelId: string | undefined): IState | undefined {
    return kernelId ? this._state.get(kernelId) : undefined;
  }

  /** Ask a kernel for an export; the answer comes as a `result`. */
  export(kernelId: string | undefined, to: ExportTarget, arg: string): boolean {
    const comm = this._byKernel(kernelId);
    if (!comm) {
      return false;
    }
    const msg: IExportRequest = {
      type: 'export',
      request: `e${++this._requests}`,
      page: this.page,
      to,
      arg
    };
    comm.send(msg);
    return true;
  }

  /** Record a comm copy; true when it is the only live copy (so: attach). */
  private _add(kernelId: string, comm: ICommLike): boolean {
    const entry: IKernelComm = this._comms.get(comm.commId) ?? {
      kernelId,
      copies: [],
      queue: Promise.resolve()
    };
    entry.copies = entry.copies.filter(c => !c.isDisposed);
    entry.copies.push(comm);
    this._comms.set(comm.commId, entry);
    comm.onMsg = msg => this._receive(comm, msg.content.data);
    this._host.changed();
    return entry.copies.length === 1;
  }

  /** The copy that handles messages: every connection sees each of them. */
  private _primary(entry: IKernelComm): ICommLike | null {
    return entry.copies.find(c => !c.isDisposed) ?? null;
  }

  private _byKernel(kernelId: string | undefined): ICommLike | null {
    for (const entry of this._comms.values()) {
      const comm = entry.kernelId === kernelId ? this._primary(entry) : null;
      if (comm) {
        return comm;
      }
    }
    return null;
  }

  private _attach(comm: ICommLike): void {
    comm.send({ type: 'attach', page: this.page, version: this.version });
  }

  private _receive(comm: ICommLike, data: unknown): void {
    const entry = this._comms.get(comm.commId);
    const msg = parseKernelMessage(data);
    if (!entry || !msg || this._primary(entry) !== comm) {
      return;
    }
    if ('page' in msg && msg.page !== this.page) {
      return; // for another page (or an earlier load of this one)
    }
    switch (msg.type) {
      case 'hello':
        this._attach(comm);
        break;
      case 'state':
        this._state.set(entry.kernelId, msg);
        this._host.changed();
        break;
      case 'result':
        this._host.result(msg.ok, msg.message);
        break;
      default: {
        // One edit at a time, in the order sent: each waits for the last save.
        const edit: Edit = msg;
        entry.queue = entry.queue.then(() => this._apply(entry, edit));
      }
    }
  }

  private async _apply(entry: IKernelComm, edit: Edit): Promise<void> {
    let ack: IAck;
    if (edit.type === 'open') {
      try {
        await this._host.open(edit.path, entry.kernelId);
        ack = { type: 'ack', request: edit.request, ok: true };
      } catch (err) {
        ack = { type: 'ack', request: edit.request, ok: false, error: String(err) };
      }
    } else {
      const applied = applyEdit(edit, this._host.notebooks(entry.kernelId));
      ack = applied.ack;
      if (applied.changed) {
        try {
          await this._host.save(applied.changed);
        } catch {
          // The edit is in the notebook; saving is the user's autosave's business.
        }
      }
    }
    this._primary(entry)?.send(ack);
  }

  private _watched = new WeakSet<IKernelLike>();
  private _comms = new Map<string, IKernelComm>();
  private _state = new Map<string, IState>();
  private _requests = 0;
}
