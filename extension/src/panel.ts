import { Widget } from '@lumino/widgets';

import { APIError, IFile, IJob, requestAPI } from './api';

const KINDS: { [kind: string]: string } = {
  train: 'Train a potential',
  committee_train: 'Train a committee',
  dataset_build: 'Build a dataset (recipe)',
  active_learn: 'Active learning (config)',
  crystal_growth: 'Crystal growth, KMC (config)',
  pimd: 'Path-integral MD (config)'
};
const FINAL = ['completed', 'failed', 'cancelled', 'interrupted'];

export interface IPanelOptions {
  /** Open a file (a notebook) in the lab. */
  open: (path: string) => Promise<void>;
  pollInterval: number;
  defaultDevice: string;
  defaultEpochs: number;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: { [key: string]: string } = {},
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    node.setAttribute(key, value);
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/**
 * The NNP Lab sidebar: a form that launches jobs from files under the server root, and a
 * live list of jobs (progress, status, cancel/resume, open the result in a notebook).
 * It holds no science: every action is a call to the server API.
 */
export class NNPLabPanel extends Widget {
  constructor(options: IPanelOptions) {
    super();
    this.options = options;
    this.id = 'nnp-lab-panel';
    this.addClass('nnp-lab-panel');
    this.title.caption = 'NNP Lab';
    this.buildForm();
    this.jobsBox = el('div', { class: 'nnp-lab-jobs', 'data-nnp': 'jobs' });
    this.node.appendChild(el('h3', {}, 'Jobs'));
    this.node.appendChild(this.jobsBox);
  }

  set pollInterval(ms: number) {
    this.options.pollInterval = ms;
    if (this.timer !== null) {
      this.stopPolling();
      this.startPolling();
    }
  }

  protected onAfterShow(): void {
    void this.refreshFiles();
    void this.refreshJobs();
    this.startPolling();
  }

  protected onAfterAttach(): void {
    if (this.isVisible) {
      this.onAfterShow();
    }
  }

  protected onBeforeHide(): void {
    this.stopPolling();
  }

  protected onBeforeDetach(): void {
    this.stopPolling();
  }

  dispose(): void {
    this.stopPolling();
    super.dispose();
  }

  private startPolling(): void {
    if (this.timer === null) {
      this.timer = window.setInterval(
        () => void this.refreshJobs(),
        this.options.pollInterval
      );
    }
  }

  private stopPolling(): void {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
      this.timer = null;
    }
  }

  // ------------------------------------------------------------------ form
  private buildForm(): void {
    const form = el('form', { class: 'nnp-lab-form', 'data-nnp': 'form' });
    form.appendChild(el('h3', {}, 'New job'));
    this.kind = el('select', { 'data-nnp': 'kind' });
    for (const [value, label] of Object.entries(KINDS)) {
      const option = el('option', { value }, label);
      this.kind.appendChild(option);
    }
    this.datasetSelect = el('select', { 'data-nnp': 'dataset' });
    this.configFile = el('select', { 'data-nnp': 'config' });
    this.out = el('input', { type: 'text', 'data-nnp': 'out', placeholder: 'runs/my-run' });
    this.epochs = el('input', {
      type: 'number',
      min: '1',
      value: String(this.options.defaultEpochs),
      'data-nnp': 'epochs'
    });
    this.members = el('input', { type: 'number', min: '2', value: '4', 'data-nnp': 'members' });
    this.device = el('select', { 'data-nnp': 'device' });
    for (const d of ['auto', 'cpu', 'cuda']) {
      const option = el('option', { value: d }, d);
      if (d === this.options.defaultDevice) {
        option.selected = true;
      }
      this.device.appendChild(option);
    }
    this.name = el('input', { type: 'text', 'data-nnp': 'name', placeholder: 'optional' });
    const rows: [string, HTMLElement, string[]][] = [
      ['Job', this.kind, Object.keys(KINDS)],
      ['Dataset', this.datasetSelect, ['train', 'committee_train']],
      ['Config file', this.configFile, ['dataset_build', 'active_learn', 'crystal_growth', 'pimd']],
      ['Output', this.out, ['train', 'committee_train', 'dataset_build', 'crystal_growth', 'pimd']],
      ['Epochs', this.epochs, ['train', 'committee_train']],
      ['Members', this.members, ['committee_train']],
      ['Device', this.device, Object.keys(KINDS)],
      ['Name', this.name, Object.keys(KINDS)]
    ];
    for (const [label, input, kinds] of rows) {
      const row = el('label', { class: 'nnp-lab-row', 'data-kinds': kinds.join(' ') });
      row.appendChild(el('span', {}, label));
      row.appendChild(input);
      form.appendChild(row);
      this.rows.push(row);
    }
    this.error = el('div', { class: 'nnp-lab-error', 'data-nnp': 'error' });
    const submit = el('button', { type: 'submit', 'data-nnp': 'submit', class: 'jp-mod-styled jp-mod-accept' }, 'Launch');
    form.appendChild(submit);
    form.appendChild(this.error);
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.submit();
    });
    this.kind.addEventListener('change', () => this.showRows());
    this.node.appendChild(form);
    this.showRows();
  }

  private showRows(): void {
    const kind = this.kind.value;
    for (const row of this.rows) {
      const kinds = (row.getAttribute('data-kinds') || '').split(' ');
      row.style.display = kinds.includes(kind) ? '' : 'none';
    }
  }

  private async refreshFiles(): Promise<void> {
    try {
      const [datasets, configs] = await Promise.all([
        requestAPI<{ files: IFile[] }>('files?kind=datasets'),
        requestAPI<{ files: IFile[] }>('files?kind=configs')
      ]);
      fill(this.datasetSelect, datasets.files);
      fill(this.configFile, configs.files);
    } catch (error) {
      this.error.textContent = `cannot list files: ${(error as Error).message}`;
    }
  }

  /** The job spec the form describes (validated again by the server). */
  spec(): Record<string, unknown> {
    const kind = this.kind.value;
    const common: Record<string, unknown> = { kind, device: this.device.value };
    if (this.name.value) {
      common.name = this.name.value;
    }
    const out = this.out.value || `runs/${kind}-${Date.now()}`;
    const epochs = Number(this.epochs.value);
    switch (kind) {
      case 'train':
        return { ...common, dataset: this.datasetSelect.value, out, config: { training: { epochs } } };
      case 'committee_train':
        return {
          ...common,
          dataset: this.datasetSelect.value,
          out,
          committee: { size: Number(this.members.value) },
          training: { epochs }
        };
      case 'dataset_build':
        return {
          ...common,
          recipe: this.configFile.value,
          ...(this.out.value ? { output: this.out.value } : {})
        };
      case 'crystal_growth':
      case 'pimd':
        return { ...common, config: this.configFile.value, out };
      default:
        return { ...common, config: this.configFile.value };
    }
  }

  private async submit(): Promise<void> {
    this.error.textContent = '';
    try {
      await requestAPI<IJob>('jobs', {
        method: 'POST',
        body: JSON.stringify({ spec: this.spec() })
      });
      this.out.value = '';
      await this.refreshJobs();
    } catch (error) {
      this.error.textContent =
        error instanceof APIError ? error.message : `failed: ${(error as Error).message}`;
    }
  }

  // ------------------------------------------------------------------ jobs
  private async refreshJobs(): Promise<void> {
    let jobs: IJob[];
    try {
      jobs = (await requestAPI<{ jobs: IJob[] }>('jobs')).jobs;
    } catch (error) {
      this.jobsBox.textContent = `cannot reach the nnp-lab server extension: ${(error as Error).message}`;
      return;
    }
    this.jobsBox.textContent = '';
    if (jobs.length === 0) {
      this.jobsBox.appendChild(el('p', { class: 'nnp-lab-empty' }, 'No jobs yet.'));
      return;
    }
    for (const job of jobs) {
      this.jobsBox.appendChild(this.jobRow(job));
    }
  }

  private jobRow(job: IJob): HTMLElement {
    const row = el('div', {
      class: `nnp-lab-job nnp-lab-status-${job.status}`,
      'data-nnp': 'job',
      'data-job-id': job.id,
      'data-status': job.status
    });
    const head = el('div', { class: 'nnp-lab-job-head' });
    head.appendChild(el('span', { class: 'nnp-lab-job-name' }, job.name || KINDS[job.kind] || job.kind));
    head.appendChild(el('span', { class: 'nnp-lab-job-status', 'data-nnp': 'status' }, job.status));
    row.appendChild(head);
    const pct = Math.round(100 * (job.progress || 0));
    const bar = el('progress', { max: '100', value: String(pct), 'data-nnp': 'progress' });
    row.appendChild(bar);
    row.appendChild(el('span', { class: 'nnp-lab-pct', 'data-nnp': 'percent' }, `${pct} %`));
    if (job.error) {
      row.appendChild(el('div', { class: 'nnp-lab-error' }, job.error));
    } else if (job.message && !FINAL.includes(job.status)) {
      row.appendChild(el('div', { class: 'nnp-lab-msg' }, job.message));
    }
    const actions = el('div', { class: 'nnp-lab-actions' });
    const button = (label: string, action: () => Promise<void>) => {
      const b = el('button', { class: 'jp-mod-styled', 'data-nnp': label.toLowerCase().replace(/ /g, '-') }, label);
      b.addEventListener('click', () => {
        action().catch(error => {
          this.error.textContent = (error as Error).message;
        });
      });
      actions.appendChild(b);
    };
    if (job.status === 'queued' || job.status === 'running') {
      button('Cancel', async () => {
        await requestAPI(`jobs/${job.id}/cancel`, { method: 'POST', body: '{}' });
        await this.refreshJobs();
      });
    } else if (job.status !== 'completed') {
      button('Resume', async () => {
        await requestAPI(`jobs/${job.id}/resume`, { method: 'POST', body: '{}' });
        await this.refreshJobs();
      });
    }
    if (job.status === 'completed') {
      button('Open in notebook', async () => {
        const made = await requestAPI<{ path: string }>(`jobs/${job.id}/notebook`, {
          method: 'POST',
          body: '{}'
        });
        await this.options.open(made.path);
      });
    }
    row.appendChild(actions);
    return row;
  }

  private options: IPanelOptions;
  private timer: number | null = null;
  private rows: HTMLElement[] = [];
  private jobsBox: HTMLDivElement;
  private kind!: HTMLSelectElement;
  private datasetSelect!: HTMLSelectElement;
  private configFile!: HTMLSelectElement;
  private out!: HTMLInputElement;
  private epochs!: HTMLInputElement;
  private members!: HTMLInputElement;
  private device!: HTMLSelectElement;
  private name!: HTMLInputElement;
  private error!: HTMLDivElement;
}

function fill(select: HTMLSelectElement, files: IFile[]): void {
  const current = select.value;
  select.textContent = '';
  for (const f of files) {
    const option = el('option', { value: f.path }, f.path);
    select.appendChild(option);
  }
  if (files.some(f => f.path === current)) {
    select.value = current;
  }
}
