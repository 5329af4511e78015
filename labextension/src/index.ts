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
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';

import { IKernelLike, PageBridge } from './bridge';
import { ExportTarget, IState } from './comm';
import { VERSION } from './version';

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

/** A notebook's shared model, which the bridge edits. */
type ISharedNotebook = NonNullable<NotebookPanel['model']>['sharedModel'];

/** The kernel id of a notebook panel, if it has a kernel. */
function kernelIdOf(panel: NotebookPanel | null): string | undefined {
  return panel?.sessionContext.session?.kernel?.id;
}

/** Short text describing the best variant, from a `state` message. */
function describeBest(state: IState | undefined): string {
  if (!state?.best) {
    return 'No best variant reported yet';
  }
  const { run, metric } = state.best;
  return `Best of session ${state.session}: run ${run}, metric ${metric}`;
}

/** A new id for this page load. */
function pageId(): string {
  return `page-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-autoresearch:plugin',
  description:
    'Lets %%autoresearch kernels insert, mark and replace notebook cells.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, IDocumentManager],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    docManager: IDocumentManager | null
  ) => {
    const refresh = () => app.commands.notifyCommandChanged();
    const panels = (): NotebookPanel[] => {
      const all: NotebookPanel[] = [];
      tracker.forEach(p => all.push(p));
      return all;
    };
    const panelOf = (notebook: ISharedNotebook) =>
      panels().find(p => p.model?.sharedModel === notebook);

    const bridge = new PageBridge<ISharedNotebook>(pageId(), VERSION, {
      notebooks: kernelId => {
        const own = new Set<ISharedNotebook>();
        const other = new Set<ISharedNotebook>();
        for (const panel of panels()) {
          if (panel.model) {
            const mine = kernelIdOf(panel) === kernelId;
            (mine ? own : other).add(panel.model.sharedModel);
          }
        }
        other.forEach(n => own.has(n) && other.delete(n));
        return { own: [...own], other: [...other] };
      },
      // Saved at once, as autosave would later: a reload keeps the cells.
      save: async notebook => {
        const panel = panelOf(notebook);
        if (panel && (docManager?.autosave ?? true) && panel.context.model.dirty) {
          await panel.context.save();
        }
      },
      // The kernel names files relative to its notebook's folder.
      open: async (path, kernelId) => {
        const own = panels().find(p => kernelIdOf(p) === kernelId);
        const folder = own ? PathExt.dirname(own.context.path) : '';
        await app.commands.execute('docmanager:open', {
          path: PathExt.normalize(PathExt.join(folder, path))
        });
      },
      result: (ok, message) => {
        const text = `Autoresearch: ${message}`;
        if (ok) {
          Notification.success(text, { autoClose: 5000 });
        } else {
          Notification.error(text, { autoClose: false });
        }
      },
      changed: refresh
    });

    const watch = (kernel: Kernel.IKernelConnection | null | undefined) =>
      bridge.watch(kernel as unknown as IKernelLike | null | undefined);
    const track = (panel: NotebookPanel) => {
      watch(panel.sessionContext.session?.kernel);
      panel.sessionContext.kernelChanged.connect((_, change) => {
        watch(change.newValue);
        refresh();
      });
    };
    tracker.forEach(track);
    tracker.widgetAdded.connect((_, panel) => track(panel));
    tracker.currentChanged.connect(refresh);
    // The page the user looks at is the one the kernels send to.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') {
        bridge.attachAll();
      }
    });

    const currentKernel = () => kernelIdOf(tracker.currentWidget);

    for (const spec of EXPORT_COMMANDS) {
      app.commands.addCommand(spec.id, {
        label: spec.label,
        caption: () => describeBest(bridge.state(currentKernel())),
        isEnabled: () => bridge.has(currentKernel()),
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
          // Looked up again: the comm may have gone while the dialog was open.
          bridge.export(currentKernel(), spec.to, arg);
        }
      });
      palette?.addItem({ command: spec.id, category: 'Autoresearch' });
    }
  }
};

export default plugin;
