import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A job as the server API returns it (see docs/openapi.yaml). */
export interface IJob {
  id: string;
  kind: string;
  name: string | null;
  status: string;
  progress: number | null;
  message: string | null;
  error: string | null;
  created: number;
  result: Record<string, unknown> | null;
}

export interface IFile {
  path: string;
  size: number;
  modified: number;
}

/** Error of an API call, carrying the server's message (which names the problem). */
export class APIError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

/** Call `/nnp-lab/api/<endpoint>` with the server's authentication (token, XSRF). */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nnp-lab', 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = {};
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) {
    throw new APIError(response.status, data.message || response.statusText);
  }
  return data as T;
}
