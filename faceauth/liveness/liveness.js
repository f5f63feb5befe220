// faceauth reference liveness client: shows the challenge's prompts, captures camera frames, sends them.
//
//   <video id="cam" autoplay playsinline muted></video><p id="prompt"></p>
//   <script type="module">
//     import { runLiveness } from "https://faces.example.com/liveness.js";
//     const result = await runLiveness({
//       baseUrl: "https://faces.example.com", tenant: "acme", subjectId: "emp_42",
//       headers: { "X-Api-Key": keyFromYourBackend },   // or route the two calls through your own backend
//       video: document.getElementById("cam"),
//       onPrompt: (text) => (document.getElementById("prompt").textContent = text),
//     });
//     // result: the Face API's answer, { live, score, reasons, steps, verification, requestId, ... }
//   </script>
//
// Frames are sent as the camera gives them (not mirrored), so "turn left" is the person's own left. The preview
// may be mirrored with CSS (transform: scaleX(-1)); that does not change what is sent.

const DEFAULTS = { framesPerStep: 2, stepMillis: 1600, settleMillis: 700, jpegQuality: 0.85, maxWidth: 640 };

async function post(url, form, headers) {
  const response = await fetch(url, { method: "POST", body: form, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

export async function createSession({ baseUrl = "", tenant, subjectId, referenceId, headers = {} }) {
  const form = new FormData();
  form.append("tenant", tenant);
  if (subjectId) form.append("subject_id", subjectId);
  if (referenceId) form.append("reference_id", referenceId);
  return post(`${baseUrl}/v1/liveness/sessions`, form, headers);
}

function grab(video, canvas, quality, maxWidth) {
  const scale = Math.min(1, maxWidth / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const taken = Date.now();
  return new Promise((resolve) => canvas.toBlob((blob) => resolve({ blob, taken }), "image/jpeg", quality));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Capture the frames for a session's challenge: one before the first step, then `framesPerStep` while each
// step is held. `video` must be playing a camera stream (startCamera below).
export async function captureChallenge(session, { video, onPrompt = () => {}, ...options }) {
  const o = { ...DEFAULTS, ...options };
  const canvas = document.createElement("canvas");
  const frames = [];
  onPrompt("Look straight at the camera");
  await sleep(o.settleMillis);
  frames.push(await grab(video, canvas, o.jpegQuality, o.maxWidth));
  for (const { prompt } of session.challenge) {
    onPrompt(prompt);
    await sleep(o.stepMillis - (o.framesPerStep - 1) * 150);
    for (let i = 0; i < o.framesPerStep; i++) {
      frames.push(await grab(video, canvas, o.jpegQuality, o.maxWidth));
      if (i + 1 < o.framesPerStep) await sleep(150);
    }
  }
  onPrompt("Checking...");
  return frames.slice(0, 12);
}

export async function sendFrames(session, frames, { baseUrl = "", tenant, headers = {} }) {
  const form = new FormData();
  form.append("tenant", tenant);
  frames.forEach(({ blob, taken }, i) => {
    form.append("frames", blob, `frame${i}.jpg`);
    form.append("timestamps", String(taken));
  });
  return post(`${baseUrl}/v1/liveness/sessions/${session.session_id}/frames`, form, headers);
}

export async function startCamera(video) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
  video.srcObject = stream;
  await video.play();
  return stream;
}

// The whole flow: a session, the camera, the prompts, the frames, the decision.
export async function runLiveness(options) {
  const { video, onPrompt = () => {} } = options;
  const session = await createSession(options);
  const stream = video.srcObject || (await startCamera(video));
  try {
    const frames = await captureChallenge(session, { ...options, video, onPrompt });
    const decision = await sendFrames(session, frames, options);
    onPrompt(decision.live ? "Done" : "Please try again");
    return decision;
  } finally {
    if (!options.keepCamera && stream && stream.getTracks) stream.getTracks().forEach((t) => t.stop());
  }
}
