// The check-in kiosk: the camera runs continuously; a detection loop guides the person from the service's own
// quality figures; a tap (or Enter, or a scanned badge) sends the best recent frame to search, or to verify
// against the badge id. Check-ins run beside the camera loop, never in its way.
import { api, ApiError, describe, grabFrame, reasonText, session } from "./api.js";

const $ = (id) => document.getElementById(id);
const LOOK_EVERY_MS = 700;       // one detect call at a time, at most this often
const RETRY_MS = 3000;           // the server is down: try again after this
const COOLDOWN_MS = 5000;        // a second tap within this time is not a second check-in
const RESULT_MS = 6000;          // a result stays this long, then the screen resets
const BEST_FRAME_MS = 2500;      // the best frame of this recent past is sent
const MIN_AREA = 0.04;           // a smaller face: "move closer" (the service refuses below its own minimum)
const DARK = 55;                 // mean luma 0..255 below this: "too dark"
const STILL = 0.06;              // the box moved more than this share of the frame width: "hold still"

// Answers that are about the photo (a refusal the person can act on), not a fault of the kiosk or the server.
const REFUSALS = new Set(["no_face", "face_too_small", "multiple_faces", "nsfw", "spoof", "blur"]);

const kiosk = { tenant: null, best: null, lastBox: null, lastCheckin: 0, inFlight: false, seq: 0, resetTimer: null, down: false };

function guidance(text) { $("guidance").textContent = text; }
function banner(text) { const b = $("banner"); b.hidden = !text; b.textContent = text || ""; }

function showResult(outcome, title, detail) {
  const box = $("result");
  clearTimeout(kiosk.resetTimer);
  box.dataset.outcome = outcome;
  box.replaceChildren(document.createTextNode(title));
  if (detail) { const small = document.createElement("small"); small.textContent = detail; box.append(small); }
  box.hidden = false;
  if (outcome !== "pending") kiosk.resetTimer = setTimeout(resetResult, RESULT_MS);
}
function resetResult() { const box = $("result"); box.hidden = true; box.dataset.outcome = "idle"; box.replaceChildren(); }

// -- the look loop: guidance from /v1/faces/detect ----------------------------------------------------------
function judge(frame, answer) {
  if (frame.brightness < DARK) return { text: "Too dark: face the light", ok: false };
  if (!answer.faces_count) return { text: "Look at the camera", ok: false };
  if (answer.faces_count > 1) return { text: "One person at a time", ok: false };
  const face = answer.faces[0];
  if (face.area_fraction < MIN_AREA) return { text: "Move closer", ok: false };
  const [x1, y1] = face.box;
  const moved = kiosk.lastBox ? Math.hypot(x1 - kiosk.lastBox[0], y1 - kiosk.lastBox[1]) / answer.width : 0;
  kiosk.lastBox = face.box;
  if (moved > STILL) return { text: "Hold still", ok: false };
  return { text: "Ready: tap Check in", ok: true, score: face.score * Math.min(1, face.area_fraction / 0.2) * (face.sharpness ?? 1) };
}

async function look() {
  const video = $("kiosk-video");
  if (video.readyState >= 2) {
    const frame = await grabFrame(video, 960); // the frame a check-in may send: the size the console enrols at
    const form = new FormData();
    form.append("file", frame.blob, "frame.jpg");
    try {
      const answer = await api("/v1/faces/detect", { form, timeoutMs: 8000 });
      if (kiosk.down) { kiosk.down = false; banner(""); }
      const verdict = judge(frame, answer);
      guidance(verdict.text);
      const now = Date.now();
      if (kiosk.best && now - kiosk.best.at > BEST_FRAME_MS) kiosk.best = null;
      if (verdict.ok && (!kiosk.best || verdict.score >= kiosk.best.score)) kiosk.best = { blob: frame.blob, score: verdict.score, at: now };
    } catch (err) {
      if (err instanceof ApiError && (err.status === 0 || err.status >= 500)) {
        kiosk.down = true;
        banner(`The server cannot be reached: retrying… (${err.code})`);
        guidance("Check-in is unavailable");
        setTimeout(look, RETRY_MS);
        return;
      }
      guidance(describe(err));
    }
  }
  setTimeout(look, LOOK_EVERY_MS);
}

// -- check-in -----------------------------------------------------------------------------------------------
async function checkIn() {
  const now = Date.now();
  if (kiosk.inFlight || now - kiosk.lastCheckin < COOLDOWN_MS) return; // a second tap is not a second check-in
  kiosk.lastCheckin = now;
  kiosk.inFlight = true;
  const seq = ++kiosk.seq;
  const badge = $("badge").value.trim();
  $("badge").value = "";
  showResult("pending", "Checking…");
  try {
    const blob = kiosk.best ? kiosk.best.blob : (await grabFrame($("kiosk-video"), 1280)).blob;
    kiosk.best = null;
    const form = new FormData();
    form.append("tenant", kiosk.tenant);
    let outcome;
    if (badge) {
      form.append("reference_id", badge);
      form.append("probes", blob, "checkin.jpg");
      const answer = await api("/v1/faces/verify", { form, timeoutMs: 10000 });
      const probe = answer.probes[0];
      const refusal = probe.imageQualityAssessment && !probe.imageQualityAssessment.passed
        ? (probe.imageQualityAssessment.reasons || []).map(reasonText).join("; ") : null;
      outcome = answer.matched ? ["success", badge] : ["refused", refusal ? `Refused: ${refusal}` : "Not recognised", `badge ${badge}`];
    } else {
      form.append("top_k", "1");
      form.append("file", blob, "checkin.jpg");
      const answer = await api("/v1/faces/search", { form, timeoutMs: 10000 });
      const q = answer.imageQualityAssessment;
      const match = answer.searchResult.matches[0];
      if (q && !q.passed) outcome = ["refused", `Refused: ${(q.reasons || []).map(reasonText).join("; ")}`];
      else if (match) outcome = ["success", match.subject_id || match.id];
      else outcome = ["refused", "Not recognised"];
    }
    if (seq !== kiosk.seq) return; // a newer check-in owns the screen: never show a stale answer
    if (outcome[0] === "success") {
      showResult("success", `Welcome, ${outcome[1]}`, `checked in at ${new Date().toLocaleTimeString()}`);
    } else {
      showResult("refused", outcome[1], outcome[2] || "please try again");
    }
  } catch (err) {
    if (seq !== kiosk.seq) return;
    if (err instanceof ApiError && err.code === "face_not_found") showResult("refused", "Unknown badge", `no enrolled face ${badge}`);
    else if (err instanceof ApiError && (err.code === "quality_check_failed" || REFUSALS.has(err.code))) {
      showResult("refused", describe(err).replace(/ \(code.*$/, ""), err.code);
    }
    else showResult("error", err.status === 0 ? "The server cannot be reached" : "Check-in failed", describe(err));
  } finally {
    kiosk.inFlight = false;
  }
}

// -- start --------------------------------------------------------------------------------------------------
async function start(key) {
  const caller = await api("/v1/caller", { key });
  if (caller.admin) throw new ApiError(400, "admin_key", "the kiosk takes a tenant key, not an admin key");
  session.set(key);
  kiosk.tenant = caller.tenant;
  $("setup").hidden = true;
  $("kiosk").hidden = false;
  if (document.fullscreenEnabled && !document.fullscreenElement) document.documentElement.requestFullscreen().catch(() => {});
  try {
    const video = $("kiosk-video");
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    await video.play();
  } catch (err) {
    guidance(`The camera cannot be used: ${err.message || err.name}`);
    return;
  }
  guidance("Look at the camera");
  look();
}

$("kiosk-setup").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("setup-error").textContent = "";
  try { await start($("kiosk-key").value.trim()); $("kiosk-key").value = ""; } catch (err) { $("setup-error").textContent = describe(err); }
});
$("checkin").addEventListener("submit", (event) => { event.preventDefault(); checkIn(); });
$("result").addEventListener("click", resetResult);
