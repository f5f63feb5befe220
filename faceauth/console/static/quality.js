// How a result looks: the photo with the detected box and landmarks, and each quality check as a labelled bar.
import { el, reasonText } from "./api.js";

// The ML service's default thresholds (ML_SERVICE_*_THRESHOLD, ML_SERVICE_FACE_AREA_THRESHOLD). The API's answers
// carry each check's verdict but not the threshold it was judged against: the bar marks the default, and the
// verdict shown is always the service's own.
export const DEFAULT_THRESHOLDS = { spoof: 0.5, blur: 0.5, nsfw: 0.5, faceArea: 0.01 };

export async function photoWithFaces(blob, detection) {
  const url = URL.createObjectURL(blob);
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = el("canvas", { class: "photo", role: "img",
    "aria-label": `the photo with ${detection ? detection.faces_count : 0} detected face(s) outlined` });
  const scale = Math.min(1, 480 / img.naturalWidth);
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  URL.revokeObjectURL(url);
  if (detection && detection.faces) {
    const sx = canvas.width / detection.width, sy = canvas.height / detection.height;
    detection.faces.forEach((face, i) => {
      const [x1, y1, x2, y2] = face.box;
      ctx.lineWidth = 3;
      ctx.strokeStyle = i === 0 ? "#00c853" : "#ffab00";
      ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
      ctx.fillStyle = "#ff1744";
      for (const [lx, ly] of face.landmarks || []) {
        ctx.beginPath();
        ctx.arc(lx * sx, ly * sy, 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
  }
  return canvas;
}

// One bar: `value` in 0..1, a marker at `threshold`, and whether the check passed, said in words too.
export function bar(label, value, threshold, passed, detail) {
  const pct = Math.max(0, Math.min(1, value)) * 100;
  return el("div", { class: `bar ${passed === null ? "info" : passed ? "pass" : "fail"}`, "data-check": label },
    el("div", { class: "bar-label" },
      el("span", { text: label }),
      el("span", { class: "bar-verdict", text: passed === null ? detail : `${passed ? "passed" : "failed"} · ${detail}` })),
    el("div", { class: "bar-track", role: "meter", "aria-label": label, "aria-valuemin": "0", "aria-valuemax": "1",
      "aria-valuenow": value.toFixed(3) },
      el("div", { class: "bar-fill", style: `width:${pct}%` }),
      threshold === null ? null : el("div", { class: "bar-threshold", style: `left:${threshold * 100}%`,
        title: `threshold ${threshold}` })));
}

// The quality checks of one photo: the API's assessment, plus the face size and pose from detection.
export function qualityBars(assessment, face) {
  const t = DEFAULT_THRESHOLDS;
  const bars = [];
  if (assessment) {
    const skipped = new Set(assessment.skipped_checks || []);
    if (assessment.spoof && !skipped.has("spoof")) {
      bars.push(bar("Anti-spoof (probability of a spoof)", assessment.spoof.probability, t.spoof, !assessment.spoof.is_spoof,
        `${assessment.spoof.probability.toFixed(3)} vs threshold ${t.spoof}`));
    }
    if (assessment.blur && !skipped.has("blur")) {
      bars.push(bar("Blur (probability of blur)", assessment.blur.probability, t.blur, assessment.blur.is_sharp,
        `${assessment.blur.probability.toFixed(3)} vs threshold ${t.blur}`));
    }
    if (assessment.nsfw && !skipped.has("nsfw")) {
      bars.push(bar("NSFW (probability)", assessment.nsfw.probability, t.nsfw, assessment.nsfw.is_safe,
        `${assessment.nsfw.probability.toFixed(3)} vs threshold ${t.nsfw}`));
    }
    for (const name of skipped) bars.push(el("p", { class: "muted", text: `${name} check not run` }));
  }
  if (face) {
    // Shown on a square-root scale so that the small fractions faces have are visible; the marker is the minimum.
    const area = face.area_fraction;
    bars.push(bar("Face size (share of the photo)", Math.sqrt(area), Math.sqrt(t.faceArea), area >= t.faceArea,
      `${(area * 100).toFixed(1)} % vs minimum ${(t.faceArea * 100).toFixed(0)} %`));
    if (face.pose) {
      const worst = Math.max(Math.abs(face.pose.yaw), Math.abs(face.pose.pitch), Math.abs(face.pose.roll));
      bars.push(bar("Pose (largest angle of 90°)", worst / 90, null, null,
        `yaw ${face.pose.yaw}°, pitch ${face.pose.pitch}°, roll ${face.pose.roll}° (not a refusal reason)`));
    }
  }
  return el("div", { class: "bars" }, bars);
}

export function refusalText(assessment) {
  if (!assessment || assessment.passed) return null;
  return (assessment.reasons || []).map(reasonText).join("; ");
}
