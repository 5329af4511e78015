/**
 * The comm protocol between the `%%autoresearch` kernel code and this
 * extension, and the handling of kernel requests against notebook models.
 * Kept free of JupyterLab imports so jest can exercise it directly.
 */
import {
  INotebookLike,
  JSONish,
  findCell,
  insertRunCell,
  markInfeasible,
  replaceSource
} from './cells';
import { VERSION } from './version';

/** Comm target name registered on every notebook kernel. */
export const COMM_TARGET = 'jupyter-autoresearch';

/** Kernel -> frontend messages (the `data` of comm open and comm msgs). */
export type KernelMessage =
  | { type: 'hello'; request: string }
  | {
      type: 'insert';
      request: string;
      anchor_cell_id: string;
      session: string;
      run: number;
      source: string;
      metadata: JSONish;
    }
  | {
      type: 'mark';
      request: string;
      anchor_cell_id: string;
      session: string;
      run: number;
      note: string;
    }
  | { type: 'replace'; request: string; anchor_cell_id: string; source: string }
  | { type: 'state'; session: string; best: JSONish | null }
  | { type: 'result'; ok: boolean; message: string }
  | { type: 'open'; request: string; path: string };

/**
 * Frontend -> kernel reply to a request: `ok`, plus `version` (hello),
 * `index` (insert), `count` (mark) or `error`. No optional properties, so
 * it stays a plain JSON object for `comm.send`.
 */
export type IAck = { type: 'ack'; request: string; ok: boolean } & {
  [key: string]: string | number | boolean;
};

/** Export targets understood by the kernel. */
export type ExportTarget = 'cell' | 'replace' | 'file' | 'notebook' | 'branch';

/** Frontend -> kernel export request, sent by the palette commands. */
export interface IExportMessage {
  type: 'export';
  to: ExportTarget;
  arg: string;
  [key: string]: string;
}

/**
 * Handle one kernel message. `notebooks` yields the candidate notebooks,
 * those attached to the messaging kernel first. Returns the ack to send,
 * or null for messages that take no reply (`state`, `result`, unknown ones
 * without a request id). Never throws: errors become `ok: false` acks.
 */
export function handleMessage(
  msg: KernelMessage,
  notebooks: () => Iterable<INotebookLike>
): IAck | null {
  const request = String((msg as { request?: unknown }).request ?? '');
  const fail = (error: string): IAck => ({
    type: 'ack',
    request,
    ok: false,
    error
  });
  try {
    switch (msg.type) {
      case 'hello':
        return { type: 'ack', request, ok: true, version: VERSION };
      case 'insert': {
        const found = findCell(notebooks(), msg.anchor_cell_id);
        if (!found) {
          return fail(`anchor cell ${msg.anchor_cell_id} not found`);
        }
        const index = insertRunCell(
          found.notebook,
          found.index,
          msg.session,
          msg.source,
          msg.metadata ?? {}
        );
        return { type: 'ack', request, ok: true, index };
      }
      case 'mark': {
        const found = findCell(notebooks(), msg.anchor_cell_id);
        if (!found) {
          return fail(`anchor cell ${msg.anchor_cell_id} not found`);
        }
        const count = markInfeasible(
          found.notebook,
          msg.session,
          msg.run,
          msg.note
        );
        return { type: 'ack', request, ok: true, count };
      }
      case 'replace': {
        const found = findCell(notebooks(), msg.anchor_cell_id);
        if (!found) {
          return fail(`anchor cell ${msg.anchor_cell_id} not found`);
        }
        replaceSource(found.notebook.cells[found.index], msg.source);
        return { type: 'ack', request, ok: true };
      }
      case 'open': // opened by the caller, which can reach the document manager
        return { type: 'ack', request, ok: true };
      case 'state': // stored by the caller
      case 'result': // outcome of an export, shown by the caller
        return null;
      default:
        return request
          ? fail(`unknown message type ${String((msg as any).type)}`)
          : null;
    }
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
}
