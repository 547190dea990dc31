// The public /v1 API, called with the signed-in key; every error becomes an ApiError.

const KEY = "ragq.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** "code: message", as the console shows every error. */
  get shown() {
    return `${this.code}: ${this.message}`;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function signIn(key) {
  sessionStorage.setItem(KEY, key);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

export function authHeaders(extra = {}) {
  const headers = new Headers(extra);
  headers.set("Authorization", `Bearer ${apiKey() ?? ""}`);
  return headers;
}

/** The API's error body as an ApiError; a 401 also signs the console out. */
export async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    if (body && body.error && body.error.code) {
      ({ code, message } = body.error);
    }
  } catch {
    // Not the API's JSON error shape (a proxy's page): keep the HTTP status.
  }
  const error = new ApiError(response.status, code, message);
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent("ragq:unauthorized", { detail: error }));
  }
  return error;
}

/** fetch() on the API: JSON in (json) or any body (body), JSON out. */
export async function api(path, { method = "GET", json, body, signal, key } = {}) {
  const headers = authHeaders();
  if (key !== undefined) headers.set("Authorization", `Bearer ${key}`);
  if (json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", `the API could not be reached (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

/** POST a multipart form with upload progress (fetch() cannot report it); the JSON answer. */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.setRequestHeader("Authorization", `Bearer ${apiKey() ?? ""}`);
    request.responseType = "text";
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    request.onerror = () =>
      reject(new ApiError(0, "network_error", "the API could not be reached"));
    request.onload = () => {
      const response = new Response(request.responseText || null, {
        status: request.status,
        statusText: request.statusText,
      });
      if (request.status >= 200 && request.status < 300) {
        resolve(JSON.parse(request.responseText));
      } else {
        errorOf(response).then(reject);
      }
    };
    request.send(form);
  });
}
