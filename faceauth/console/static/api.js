// The Face API's public REST routes, called as any client would. The key lives in sessionStorage only.
const KEY = "faceauth.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, code, message, requestId = null, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details;
  }
}

// One call: `form` (FormData) or `json` as the body; answers the parsed JSON or throws ApiError.
export async function api(path, { method = null, form = null, json = null, key = session.key, timeoutMs = 30000 } = {}) {
  const headers = {};
  if (key) headers["X-Api-Key"] = key;
  let body = null;
  if (form) body = form;
  if (json) { body = JSON.stringify(json); headers["Content-Type"] = "application/json"; }
  method = method || (body ? "POST" : "GET");
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal: abort.signal, cache: "no-store" });
  } catch (err) {
    const timedOut = err && err.name === "AbortError";
    throw new ApiError(0, timedOut ? "timeout" : "network_error",
      timedOut ? "the server did not answer in time" : `the server cannot be reached: ${err && err.message}`);
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.code || `http_${response.status}`,
      e.message || response.statusText || "the request failed", data && data.requestId, e.details || null);
  }
  return data;
}

const REASONS = {
  spoof: "it looks like a photo of a photo or of a screen (spoof suspected)",
  blur: "the photo is too blurry",
  nsfw: "the photo is not suitable",
  no_face: "no face was found",
  face_too_small: "the face is too small: come closer to the camera",
  multiple_faces: "there is more than one face",
};

export function reasonText(reason) { return REASONS[reason] || reason; }

// A failure in plain words, with its code and request id for support.
export function describe(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err && err.message ? err.message : err}`;
  let text;
  if (err.code === "quality_check_failed" && err.details && err.details.failed_checks) {
    text = "Refused: " + err.details.failed_checks.map(reasonText).join("; ") + ".";
  } else if (err.status === 0) {
    text = `The server cannot be reached (${err.message}).`;
  } else if (err.status === 401) {
    text = "The API key is missing, unknown or revoked.";
  } else if (err.status === 403) {
    text = "This API key may not do that.";
  } else if (REASONS[err.code]) {
    text = `Refused: ${REASONS[err.code]}.`;
  } else {
    text = err.message.charAt(0).toUpperCase() + err.message.slice(1) + ".";
  }
  return `${text} (code ${err.code}${err.requestId ? `, request ${err.requestId}` : ""})`;
}

// A valid face id from a file name: the characters ids allow, at most 128.
export function idFromName(name) {
  const stem = name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+/, "");
  return (stem || "face").slice(0, 128);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "style") node.style.cssText = value; // the CSSOM: the policy blocks style attributes
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// The camera's current frame as a JPEG blob (at most `maxWidth` wide).
export function grabFrame(video, maxWidth = 800) {
  const scale = Math.min(1, maxWidth / (video.videoWidth || maxWidth));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let luma = 0, n = 0;
  for (let i = 0; i < pixels.length; i += 4 * 16) { luma += 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2]; n++; }
  return new Promise((resolve) => canvas.toBlob((blob) => resolve({ blob, brightness: n ? luma / n : 0, width: canvas.width, height: canvas.height }), "image/jpeg", 0.9));
}
