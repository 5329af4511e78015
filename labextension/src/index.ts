import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  Notification
} from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage as KM } from '@jupyterlab/services';

import { INotebookLike, JSONish } from './cells';
import {
  COMM_TARGET,
  ExportTarget,
  IExportMessage,
  KernelMessage,
  handleMessage
} from './comm';

/** Palette command ids. */
namespace CommandIDs {
  export const exportCell = 'jupyter-autoresearch:export-cell';
  export const exportReplace = 'jupyter-autoresearch:export-replace';
  export const exportFile = 'jupyter-autoresearch:export-file';
  export const exportNotebook = 'jupyter-autoresearch:export-notebook';
  export const exportBranch = 'jupyter-autoresearch:export-branch';
}

/** One palette command sending an `export` request to the kernel. */
interface IExportCommand {
  id: string;
  label: string;
  to: ExportTarget;
  /** Title of the dialog asking for `arg`; no dialog when absent. */
  ask?: string;
}

const EXPORT_COMMANDS: IExportCommand[] = [
  {
    id: CommandIDs.exportCell,
    label: 'Autoresearch: Insert best variant below',
    to: 'cell'
  },
  {
    id: CommandIDs.exportReplace,
    label: 'Autoresearch: Replace benchmark cell with best',
    to: 'replace'
  },
  {
    id: CommandIDs.exportFile,
    label: 'Autoresearch: Export best to .py file…',
    to: 'file',
    ask: 'Export best variant to .py file (path)'
  },
  {
    id: CommandIDs.exportNotebook,
    label: 'Autoresearch: Open best in new notebook…',
    to: 'notebook',
    ask: 'Open best variant in a new notebook (path)'
  },
  {
    id: CommandIDs.exportBranch,
    label: 'Autoresearch: Finalize best into a git branch…',
    to: 'branch',
    ask: 'Finalize best variant into a git branch (name)'
  }
];

/**
 * Open autoresearch comms and the last `state` message, per kernel id.
 * Several connections (one per notebook) can share a kernel and each sees
 * every comm_open, so comms are deduplicated by comm id.
 */
class CommRegistry {
  constructor(private _onChange: () => void) {}

  /** Register the comm target on a kernel connection (once). */
  watch(kernel: Kernel.IKernelConnection | null | undefined): void {
    if (!kernel || this._watched.has(kernel)) {
      return;
    }
    this._watched.add(kernel);
    kernel.registerCommTarget(COMM_TARGET, (comm, msg) =>
      this._open(kernel, comm, msg)
    );
  }

  /** The most recently opened live comm of a kernel. */
  current(kernelId: string | undefined): Kernel.IComm | null {
    const comms = (kernelId && this._comms.get(kernelId)) || [];
    const live = comms.filter(c => !c.isDisposed);
    return live.length ? live[live.length - 1] : null;
  }

  /** The last `state` message of a kernel, if any. */
  state(kernelId: string | undefined): JSONish | undefined {
    return kernelId ? this._state.get(kernelId) : undefined;
  }

  /** Opens a document given relative to the kernel's notebook folder. */
  openPath: (path: string, kernelId: string) => void = () => undefined;

  /** Notebooks to search for anchors: the kernel's own first. */
  notebooks: (kernelId: string) => Iterable<INotebookLike> = () => [];

  private _open(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm,
    openMsg: KM.ICommOpenMsg
  ): void {
    if (this._seen.has(comm.commId)) {
      return; // already served through another connection to this kernel
    }
    this._seen.add(comm.commId);
    const kernelId = kernel.id;
    const comms = (this._comms.get(kernelId) ?? []).filter(c => !c.isDisposed);
    comms.push(comm);
    this._comms.set(kernelId, comms);

    const receive = (data: unknown): void => {
      if (!data || typeof data !== 'object') {
        return;
      }
      const msg = data as KernelMessage;
      if (msg.type === 'state') {
        this._state.set(kernelId, msg);
        this._onChange();
      } else if (msg.type === 'open') {
        this.openPath(msg.path, kernelId);
      } else if (msg.type === 'result') {
        // The kernel's answer to an export command.
        const text = `Autoresearch: ${msg.message}`;
        if (msg.ok) {
          Notification.success(text, { autoClose: 5000 });
        } else {
          Notification.error(text, { autoClose: false });
        }
      }
      const ack = handleMessage(msg, () => this.notebooks(kernelId));
      if (ack && !comm.isDisposed) {
        comm.send(ack);
      }
    };
    comm.onMsg = msg => receive(msg.content.data);
    comm.onClose = () => {
      const rest = (this._comms.get(kernelId) ?? []).filter(c => c !== comm);
      this._comms.set(kernelId, rest);
      this._onChange();
    };
    this._onChange();
    receive(openMsg.content.data);
  }

  private _watched = new WeakSet<Kernel.IKernelConnection>();
  private _seen = new Set<string>();
  private _comms = new Map<string, Kernel.IComm[]>();
  private _state = new Map<string, JSONish>();
}

/** The kernel id of a notebook panel, if it has a kernel. */
function kernelIdOf(panel: NotebookPanel | null): string | undefined {
  return panel?.sessionContext.session?.kernel?.id;
}

/** Short text describing the best variant, from a `state` message. */
function describeBest(state: JSONish | undefined): string {
  const best = state?.best;
  if (!best || typeof best !== 'object') {
    return 'No best variant reported yet';
  }
  const parts = ['run', 'metric']
    .filter(k => best[k] !== undefined)
    .map(k => `${k} ${JSON.stringify(best[k])}`);
  return `Best of session ${state?.session ?? '?'}: ${parts.join(', ')}`;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-autoresearch:plugin',
  description:
    'Lets %%autoresearch kernels insert, mark and replace notebook cells.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ) => {
    const refresh = () => app.commands.notifyCommandChanged();
    const registry = new CommRegistry(refresh);

    // Kernel's own notebooks first, then every other open notebook.
    registry.notebooks = function* (kernelId: string) {
      const panels: NotebookPanel[] = [];
      tracker.forEach(p => panels.push(p));
      const own = panels.filter(p => kernelIdOf(p) === kernelId);
      for (const panel of [...own, ...panels.filter(p => !own.includes(p))]) {
        if (panel.model) {
          yield panel.model.sharedModel;
        }
      }
    };

    // The kernel runs in its notebook's folder and names files relative to it.
    registry.openPath = (path, kernelId) => {
      let folder = '';
      tracker.forEach(p => {
        if (!folder && kernelIdOf(p) === kernelId) {
          folder = PathExt.dirname(p.context.path);
        }
      });
      void app.commands.execute('docmanager:open', {
        path: PathExt.normalize(PathExt.join(folder, path))
      });
    };

    const track = (panel: NotebookPanel) => {
      registry.watch(panel.sessionContext.session?.kernel);
      panel.sessionContext.kernelChanged.connect((_, change) => {
        registry.watch(change.newValue);
        refresh();
      });
    };
    tracker.forEach(track);
    tracker.widgetAdded.connect((_, panel) => track(panel));
    tracker.currentChanged.connect(refresh);

    const currentComm = () =>
      registry.current(kernelIdOf(tracker.currentWidget));

    for (const spec of EXPORT_COMMANDS) {
      app.commands.addCommand(spec.id, {
        label: spec.label,
        caption: () =>
          describeBest(registry.state(kernelIdOf(tracker.currentWidget))),
        isEnabled: () => currentComm() !== null,
        execute: async () => {
          let arg = '';
          if (spec.ask) {
            const result = await InputDialog.getText({
              title: spec.ask,
              placeholder: 'leave empty for the default'
            });
            if (!result.button.accept) {
              return;
            }
            arg = (result.value ?? '').trim();
          }
          // Re-read the comm: it may have closed while the dialog was open.
          const comm = currentComm();
          if (comm) {
            const msg: IExportMessage = { type: 'export', to: spec.to, arg };
            comm.send(msg);
          }
        }
      });
      palette?.addItem({ command: spec.id, category: 'Autoresearch' });
    }
  }
};

export default plugin;
