// The console: sign in, gallery, enrol, test, admin. Every API failure is shown in the status line or in place.
import { api, ApiError, describe, el, grabFrame, idFromName, session } from "./api.js";
import { photoWithFaces, qualityBars, refusalText } from "./quality.js";

const $ = (id) => document.getElementById(id);
const state = { caller: null, pages: [], cursor: null, pageIndex: 0 };

function status(text, kind = "") {
  const line = $("status");
  line.textContent = text;
  line.className = `status ${kind}`;
}
function fail(err) { status(describe(err), "error"); }
const tenant = () => $("tenant").value.trim();

function requireTenant() {
  const t = tenant();
  if (!t) { status("Choose a tenant first (the Tenant field at the top).", "error"); $("tenant").focus(); }
  return t;
}

// -- sign in / out ----------------------------------------------------------------------------------------
async function signIn(key) {
  const caller = await api("/v1/caller", { key });
  session.set(key);
  state.caller = caller;
  $("who-key").textContent = caller.admin ? "admin key" : `tenant key`;
  $("tenant").readOnly = !caller.admin;
  $("keys-admin").hidden = !caller.admin;
  if (!caller.admin) $("tenant").value = caller.tenant;
  await loadTenants(); // before the sections appear: the gallery needs the tenant
  $("page-signin").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  show("gallery");
}

function signOut() {
  session.clear();
  state.caller = null;
  for (const video of document.querySelectorAll("video")) stopCamera(video);
  location.replace("/console");
}

async function loadTenants() {
  try {
    const answer = await api("/v1/tenants");
    const list = $("tenant-list");
    list.replaceChildren(...answer.tenants.map((t) => el("option", { value: t.tenant })));
    $("tenant-rows").replaceChildren(...answer.tenants.map((t) =>
      el("tr", {}, el("td", { text: t.tenant }), el("td", { text: String(t.faces) }), el("td", { text: String(t.subjects) }))));
    if (!answer.complete) status("Counts are partial: the index holds more rows than one count reads.");
    if (!tenant() && answer.tenants.length) $("tenant").value = answer.tenants[0].tenant;
  } catch (err) { fail(err); }
}

// -- navigation -------------------------------------------------------------------------------------------
function show(page) {
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${page}`;
  for (const button of document.querySelectorAll("#nav button")) {
    if (button.dataset.page === page) button.setAttribute("aria-current", "page"); else button.removeAttribute("aria-current");
  }
  if (page === "gallery") loadGallery(null, 0);
  if (page === "admin") { loadTenants(); if (state.caller && state.caller.admin) loadKeys(); }
}

// -- gallery ----------------------------------------------------------------------------------------------
const PAGE_SIZE = 24;

async function thumbnail(face) {
  const img = el("img", { alt: `face ${face.face_id}`, loading: "lazy" });
  try {
    const link = await api(`/v1/faces/image-url/${encodeURIComponent(face.face_id)}?tenant=${encodeURIComponent(face.tenant)}`);
    img.src = link.url;
  } catch (err) {
    img.alt = err instanceof ApiError && err.code === "image_not_stored" ? "image not stored" : `no image: ${describe(err)}`;
  }
  return img;
}

function subjectCard(subject) {
  const faces = subject.faces.map((face) => {
    const box = el("div", { class: "face", "data-face-id": face.face_id });
    thumbnail(face).then((img) => box.prepend(img));
    box.append(el("span", { text: face.face_id }),
      el("button", { type: "button", class: "danger", "aria-label": `delete face ${face.face_id}`,
        onclick: () => deleteFace(face) }, "Delete face"));
    return box;
  });
  return el("article", { class: "card", "data-subject-id": subject.subject_id, "data-testid": "subject" },
    el("h3", { text: subject.subject_id }),
    el("div", { class: "faces" }, faces),
    el("button", { type: "button", class: "danger", "aria-label": `delete subject ${subject.subject_id}`,
      onclick: () => deleteSubject(subject) }, "Delete subject"));
}

async function loadGallery(cursor, pageIndex) {
  const t = tenant();
  if (!t) { $("gallery").replaceChildren(el("p", { class: "muted", text: "Choose a tenant to see its subjects." })); return; }
  try {
    const query = new URLSearchParams({ tenant: t, limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v1/subjects?${query}`);
    state.pages[pageIndex] = cursor;
    state.pageIndex = pageIndex;
    state.cursor = page.next_cursor;
    $("gallery").replaceChildren(...(page.subjects.length ? page.subjects.map(subjectCard)
      : [el("p", { class: "muted", text: `No subjects in tenant ${t}.` })]));
    $("gallery-prev").disabled = pageIndex === 0;
    $("gallery-next").disabled = !page.next_cursor;
    $("gallery-page").textContent = `page ${pageIndex + 1}`;
  } catch (err) { fail(err); }
}

async function findSubject(id) {
  const t = requireTenant();
  if (!t || !id) return;
  try {
    const subject = await api(`/v1/subjects/${encodeURIComponent(id)}?tenant=${encodeURIComponent(t)}`);
    $("gallery").replaceChildren(subjectCard(subject));
    $("gallery-prev").disabled = true; $("gallery-next").disabled = true;
    $("gallery-page").textContent = "";
  } catch (err) {
    if (err instanceof ApiError && err.code === "subject_not_found") {
      $("gallery").replaceChildren(el("p", { text: `No subject ${id} in tenant ${t}.` }));
    }
    fail(err);
  }
}

async function deleteFace(face) {
  if (!confirm(`Delete face ${face.face_id} (its vector and image) from tenant ${face.tenant}? This cannot be undone.`)) return;
  try {
    await api(`/v1/faces/delete?id=${encodeURIComponent(face.face_id)}&tenant=${encodeURIComponent(face.tenant)}`, { method: "DELETE" });
    status(`Deleted face ${face.face_id}.`, "ok");
    loadGallery(state.pages[state.pageIndex], state.pageIndex);
  } catch (err) { fail(err); }
}

async function deleteSubject(subject) {
  if (!confirm(`Delete subject ${subject.subject_id} and all ${subject.faces.length} of its faces? This cannot be undone.`)) return;
  try {
    const t = subject.faces.length ? subject.faces[0].tenant : tenant();
    const answer = await api(`/v1/subjects/${encodeURIComponent(subject.subject_id)}?tenant=${encodeURIComponent(t)}`, { method: "DELETE" });
    status(`Deleted subject ${subject.subject_id} (${answer.deleted_faces.length} faces).`, "ok");
    loadGallery(state.pages[state.pageIndex], state.pageIndex);
  } catch (err) { fail(err); }
}

// -- camera -----------------------------------------------------------------------------------------------
async function startCamera(video) {
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    await video.play();
    return true;
  } catch (err) {
    status(`The camera cannot be used: ${err.message || err.name}.`, "error");
    return false;
  }
}
function stopCamera(video) {
  if (video.srcObject) { for (const track of video.srcObject.getTracks()) track.stop(); video.srcObject = null; }
}

// -- enrol ------------------------------------------------------------------------------------------------
let chosen = [];

function choose(files) {
  chosen = [...files].filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp)$/i.test(f.name));
  $("enrol-list").replaceChildren(...chosen.map((file, i) =>
    el("div", { class: "row" },
      el("label", { for: `enrol-id-${i}`, text: `Face id for ${file.name}` }),
      el("input", { id: `enrol-id-${i}`, value: idFromName(file.name), spellcheck: "false" }))));
  $("enrol-send").disabled = chosen.length === 0;
}

async function detectFaces(blob) {
  const form = new FormData();
  form.append("file", blob, "photo.jpg");
  try { return await api("/v1/faces/detect", { form }); } catch { return null; } // the drawing is a bonus
}

// One result card: the photo with the faces drawn, the verdict in words, and each check as a bar.
async function resultCard(blob, faceId, assessment, error, detection, testid = "enrol-result") {
  const refused = error || (assessment && !assessment.passed);
  const words = error ? describe(error) : assessment && !assessment.passed ? `Refused: ${refusalText(assessment)}.` : "Enrolled.";
  const canvas = await photoWithFaces(blob, detection);
  const face = detection && detection.faces && detection.faces[0];
  const quality = (assessment || (error && error.details && error.details.imageQualityAssessment)) || null;
  return el("article", { class: `result ${refused ? "refused" : "accepted"}`, "data-testid": testid,
    "data-face-id": faceId, "data-outcome": refused ? "refused" : "accepted", "data-code": error ? error.code : "" },
  canvas,
  el("div", {}, el("p", { class: "verdict", text: `${faceId}: ${words}` }), qualityBars(quality, face)));
}

async function enrolFiles() {
  const t = requireTenant();
  if (!t || !chosen.length) return;
  const ids = chosen.map((_, i) => $(`enrol-id-${i}`).value.trim());
  const subject = $("enrol-subject").value.trim();
  const form = new FormData();
  form.append("tenant", t);
  chosen.forEach((file, i) => {
    form.append("ids", ids[i]);
    if (subject) form.append("subject_ids", subject);
    form.append("files", file, file.name);
  });
  $("enrol-send").disabled = true;
  status(`Enrolling ${chosen.length} photo(s)…`);
  try {
    const answer = await api("/v1/faces/batch/insert", { form, timeoutMs: 120000 });
    const cards = await Promise.all(answer.results.map(async (item) => {
      const file = chosen[item.index];
      const err = item.error ? new ApiError(item.status, item.error.code, item.error.message, answer.requestId, item.error.details) : null;
      return resultCard(file, item.id, item.imageQualityAssessment, err, await detectFaces(file));
    }));
    $("enrol-results").prepend(...cards);
    status(`${answer.succeeded} enrolled, ${answer.failed} refused.`, answer.failed ? "error" : "ok");
  } catch (err) { fail(err); } finally { $("enrol-send").disabled = chosen.length === 0; }
}

async function enrolCamera() {
  const t = requireTenant();
  const id = $("enrol-cam-id").value.trim();
  if (!t) return;
  if (!id) { status("Type a face id for the camera photo.", "error"); $("enrol-cam-id").focus(); return; }
  const { blob } = await grabFrame($("enrol-video"), 1280);
  const form = new FormData();
  form.append("tenant", t); form.append("id", id); form.append("file", blob, "camera.jpg");
  status(`Enrolling ${id}…`);
  const detection = await detectFaces(blob);
  try {
    const answer = await api("/v1/faces/insert", { form });
    $("enrol-results").prepend(await resultCard(blob, id, answer.imageQualityAssessment, null, detection));
    status(`Enrolled ${id}.`, "ok");
  } catch (err) {
    $("enrol-results").prepend(await resultCard(blob, id, null, err, detection));
    fail(err);
  }
}

// -- test -------------------------------------------------------------------------------------------------
function scoreBar(score, threshold) {
  const pct = Math.max(0, Math.min(1, score)) * 100;
  return el("div", { class: `bar ${score >= threshold ? "pass" : "fail"}` },
    el("div", { class: "bar-track", role: "meter", "aria-label": "similarity", "aria-valuemin": "0", "aria-valuemax": "1", "aria-valuenow": score.toFixed(3) },
      el("div", { class: "bar-fill", style: `width:${pct}%` }),
      el("div", { class: "bar-threshold", style: `left:${threshold * 100}%`, title: `threshold ${threshold}` })));
}

async function runTest(blob) {
  const t = requireTenant();
  if (!t) return;
  const mode = document.querySelector("input[name=test-mode]:checked").value;
  const form = new FormData();
  form.append("tenant", t);
  let answer;
  status(mode === "search" ? "Searching…" : "Verifying…");
  const detection = await detectFaces(blob);
  const face = detection && detection.faces && detection.faces[0];
  try {
    if (mode === "search") {
      form.append("file", blob, "probe.jpg");
      answer = await api("/v1/faces/search", { form });
    } else {
      const ref = $("test-ref").value.trim();
      if (!ref) { status("Type the reference face id to verify against.", "error"); $("test-ref").focus(); return; }
      form.append("reference_id", ref); form.append("probes", blob, "probe.jpg");
      answer = await api("/v1/faces/verify", { form });
    }
  } catch (err) {
    $("test-results").prepend(await resultCard(blob, "probe", null, err, detection, "test-result"));
    fail(err);
    return;
  }
  const canvas = await photoWithFaces(blob, detection);
  let body;
  if (mode === "search") {
    const r = answer.searchResult;
    const refusal = refusalText(answer.imageQualityAssessment);
    const items = r.matches.map((m) => el("li", { "data-match-id": m.id },
      el("span", { text: `${m.id}${m.subject_id && m.subject_id !== m.id ? ` (subject ${m.subject_id})` : ""}: score ${m.score.toFixed(3)} vs threshold ${r.threshold}` }),
      scoreBar(m.score, r.threshold)));
    body = el("div", {},
      el("p", { class: "verdict", "data-testid": "test-verdict",
        text: refusal ? `Refused: ${refusal}.` : r.matches.length ? `${r.matches.length} match(es) at or above ${r.threshold}.` : `No enrolled face at or above ${r.threshold}.` }),
      el("ol", { class: "matches", "data-testid": "match-list", "data-count": String(r.matches.length) }, items),
      qualityBars(answer.imageQualityAssessment, face));
  } else {
    const probe = answer.probes[0];
    body = el("div", {},
      el("p", { class: "verdict", "data-testid": "test-verdict", "data-matched": String(answer.matched),
        text: answer.matched ? `Same person as ${answer.reference.id}.` : `Not the same person as ${answer.reference.id}${probe.reason ? ` (${probe.reason})` : ""}.` }),
      el("ol", { class: "matches", "data-testid": "match-list", "data-count": answer.matched ? "1" : "0" },
        el("li", { "data-match-id": answer.matched ? answer.reference.id : "" },
          el("span", { text: `score ${probe.score === null ? "—" : probe.score.toFixed(3)} vs threshold ${answer.threshold}` }),
          probe.score === null ? null : scoreBar(probe.score, answer.threshold))),
      qualityBars(probe.imageQualityAssessment, face));
  }
  const matched = mode === "search" ? answer.searchResult.matches.length > 0 : answer.matched;
  $("test-results").prepend(el("article", { class: `result ${matched ? "accepted" : "refused"}`, "data-testid": "test-result",
    "data-outcome": matched ? "matched" : "not-matched" }, canvas, body));
  status(matched ? "Match found." : "No match.", matched ? "ok" : "");
}

// -- admin: keys ------------------------------------------------------------------------------------------
async function loadKeys() {
  try {
    const answer = await api("/v1/keys");
    $("key-rows").replaceChildren(...answer.keys.map((k) => el("tr", { "data-key-id": k.key_id },
      el("td", { text: k.key_id }), el("td", { text: k.admin ? "admin (all)" : k.tenant }), el("td", { text: k.name }),
      el("td", { text: new Date(k.created_at_ms).toISOString().replace("T", " ").slice(0, 19) }),
      el("td", { "data-testid": "key-state", text: k.active ? "active" : "revoked" }),
      el("td", {}, k.active && k.key_id !== state.caller.key_id
        ? el("button", { type: "button", class: "danger", "aria-label": `revoke key ${k.key_id}`, onclick: () => revokeKey(k) }, "Revoke")
        : k.key_id === state.caller.key_id ? el("span", { class: "muted", text: "this key" }) : null))));
  } catch (err) { fail(err); }
}

async function createKey(event) {
  event.preventDefault();
  const t = $("key-tenant").value.trim();
  try {
    const key = await api("/v1/keys", { method: "POST", json: { tenant: t || null, name: $("key-name").value.trim() } });
    $("key-new").replaceChildren(el("p", { text: `New ${key.admin ? "admin" : `tenant ${key.tenant}`} key ${key.key_id}. It is shown this once: copy it now.` }),
      el("p", { class: "secret", "data-testid": "key-secret", text: key.key }));
    status(`Created key ${key.key_id}.`, "ok");
    loadKeys();
  } catch (err) { fail(err); }
}

async function revokeKey(key) {
  if (!confirm(`Revoke key ${key.key_id} (${key.name || "no name"})? Clients using it stop working within 10 seconds.`)) return;
  try {
    await api(`/v1/keys/${key.key_id}`, { method: "DELETE" });
    status(`Revoked key ${key.key_id}.`, "ok");
    loadKeys();
  } catch (err) { fail(err); }
}

// -- wiring -----------------------------------------------------------------------------------------------
function wire() {
  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("api-key");
    $("signin-error").textContent = "";
    try { await signIn(input.value.trim()); input.value = ""; } catch (err) { $("signin-error").textContent = describe(err); }
  });
  $("sign-out").addEventListener("click", signOut);
  for (const button of document.querySelectorAll("#nav button")) button.addEventListener("click", () => show(button.dataset.page));
  $("tenant").addEventListener("change", () => { if (!$("page-gallery").hidden) loadGallery(null, 0); });
  $("gallery-search").addEventListener("submit", (e) => { e.preventDefault(); findSubject($("gallery-id").value.trim()); });
  $("gallery-all").addEventListener("click", () => loadGallery(null, 0));
  $("gallery-next").addEventListener("click", () => loadGallery(state.cursor, state.pageIndex + 1));
  $("gallery-prev").addEventListener("click", () => loadGallery(state.pages[state.pageIndex - 1], state.pageIndex - 1));
  const drop = $("drop");
  drop.addEventListener("click", () => $("enrol-files").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("enrol-files").click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files); });
  $("enrol-files").addEventListener("change", (e) => choose(e.target.files));
  $("enrol-send").addEventListener("click", enrolFiles);
  $("enrol-camera").addEventListener("click", async () => { if (await startCamera($("enrol-video"))) $("enrol-capture").disabled = false; });
  $("enrol-capture").addEventListener("click", enrolCamera);
  $("test-file").addEventListener("change", (e) => { if (e.target.files[0]) runTest(e.target.files[0]); e.target.value = ""; });
  $("test-camera").addEventListener("click", async () => { if (await startCamera($("test-video"))) $("test-capture").disabled = false; });
  $("test-capture").addEventListener("click", async () => runTest((await grabFrame($("test-video"), 1280)).blob));
  $("key-create").addEventListener("submit", createKey);
}

wire();
if (session.key) signIn(session.key).catch((err) => { session.clear(); $("signin-error").textContent = describe(err); });
