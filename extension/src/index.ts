import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { NNPLabPanel } from './panel';

const PLUGIN_ID = 'nnp-lab-extension:plugin';

namespace CommandIDs {
  export const open = 'nnp-lab:open';
  export const refresh = 'nnp-lab:refresh';
}

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="6" cy="7" r="2.5"/><circle cx="18" cy="7" r="2.5"/>
    <circle cx="12" cy="17" r="2.5"/>
    <path d="M6 7 L18 7 L12 17 Z" fill="none" stroke="#616161" stroke-width="1.3"/>
  </g></svg>`;

export const nnpLabIcon = new LabIcon({ name: 'nnp-lab:icon', svgstr: ICON_SVG });

/**
 * The NNP Lab sidebar, with a launcher tile and command-palette commands.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Launch and follow nnp-lab jobs from a JupyterLab sidebar.',
  autoStart: true,
  requires: [ICommandPalette],
  optional: [ILauncher, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette,
    launcher: ILauncher | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new NNPLabPanel({
      open: async (path: string) => {
        await app.commands.execute('docmanager:open', { path });
      },
      pollInterval: 2000,
      defaultDevice: 'auto',
      defaultEpochs: 50
    });
    panel.title.icon = nnpLabIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'nnp-lab-panel');
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'NNP Lab',
      caption: 'Open the NNP Lab sidebar (jobs: datasets, training, active learning)',
      icon: args => (args['isPalette'] ? undefined : nnpLabIcon),
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'NNP Lab: Refresh Jobs',
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    palette.addItem({ command: CommandIDs.open, category: 'NNP Lab' });
    palette.addItem({ command: CommandIDs.refresh, category: 'NNP Lab' });
    if (launcher) {
      launcher.add({ command: CommandIDs.open, category: 'Other', rank: 1 });
    }

    if (settingRegistry) {
      settingRegistry
        .load(plugin.id)
        .then(settings => {
          const apply = () => {
            panel.pollInterval = settings.get('pollInterval').composite as number;
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.error('Failed to load settings for nnp-lab-extension.', reason);
        });
    }
  }
};

export default plugin;
