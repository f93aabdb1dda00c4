// keras-serving playground: plain JavaScript, no framework, no third-party code.
// It talks only to this server's own APIs (same origin): GET /v1/models, POST /v1/predict, and for the
// protocol comparison POST /v1/models/{m}/versions/{v}:predict (TF Serving REST) and
// POST /v2/models/{m}/versions/{v}/infer (KServe V2).

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 2000;
const MLP_FEATURES = [
  ["age", "age (years)"],
  ["sex", "sex (1 or 2)"],
  ["bmi", "bmi (body-mass index)"],
  ["bp", "bp (mean blood pressure)"],
  ["s1", "s1 (total serum cholesterol)"],
  ["s2", "s2 (LDL cholesterol)"],
  ["s3", "s3 (HDL cholesterol)"],
  ["s4", "s4 (total / HDL cholesterol)"],
  ["s5", "s5 (log serum triglycerides)"],
  ["s6", "s6 (blood sugar)"],
];

// ----- MNIST-style preprocessing ---------------------------------------------------------------
// What the MNIST authors did to every digit: the bounding box of the ink is scaled (keeping its aspect
// ratio) so that its longer side is 20 pixels, then placed in a 28×28 field so that its centre of mass
// is at the centre. Scaling averages the source pixels each target pixel covers (area resampling), so a
// 280×280 drawing shrinks without aliasing. Output: white on black, 0–255 integers, as the CNN's input
// contract says. tests/service/protocols/mnist_style.py is the same algorithm in NumPy.
export const MNIST = Object.freeze({ size: 28, box: 20, centre: 14, inkThreshold: 0.05 });

/** Grey levels (Float64Array, 0–255) of RGBA pixels; transparent pixels count as white paper. With
 * ``autoInvert``, a mostly light picture (a dark digit on paper) is inverted to white on black. */
export function greyFromImageData(imageData, autoInvert) {
  const { data, width, height } = imageData;
  const grey = new Float64Array(width * height);
  let sum = 0;
  for (let i = 0; i < grey.length; i++) {
    const alpha = data[4 * i + 3] / 255;
    const luminance = 0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2];
    grey[i] = luminance * alpha + 255 * (1 - alpha);
    sum += grey[i];
  }
  if (autoInvert && sum / grey.length > 127) {
    for (let i = 0; i < grey.length; i++) grey[i] = 255 - grey[i];
  }
  return grey;
}

/** For each of ``outSize`` target pixels: the first source pixel it covers and the covered fractions. */
function areaWeights(inSize, outSize) {
  const scale = inSize / outSize;
  const rows = [];
  for (let o = 0; o < outSize; o++) {
    const a = o * scale;
    const b = (o + 1) * scale;
    const first = Math.floor(a);
    const last = Math.min(inSize - 1, Math.ceil(b) - 1);
    const weights = [];
    for (let j = first; j <= last; j++) weights.push((Math.min(j + 1, b) - Math.max(j, a)) / scale);
    rows.push({ first, weights });
  }
  return rows;
}

/** ``grey`` (row-major ``width``×``height``, white ink on black) → 784 values 0–255 in MNIST's layout,
 * or ``null`` when there is no ink. */
export function mnistStyle(grey, width, height) {
  let max = 0;
  for (let i = 0; i < grey.length; i++) if (grey[i] > max) max = grey[i];
  if (!(max > 0)) return null;
  const cut = max * MNIST.inkThreshold;
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (grey[y * width + x] > cut) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  const scale = MNIST.box / Math.max(bw, bh);
  const tw = Math.max(1, Math.round(bw * scale));
  const th = Math.max(1, Math.round(bh * scale));
  const wx = areaWeights(bw, tw);
  const wy = areaWeights(bh, th);
  const rows = new Float64Array(bh * tw); // horizontal pass
  for (let y = 0; y < bh; y++) {
    const base = (y0 + y) * width + x0;
    for (let o = 0; o < tw; o++) {
      const { first, weights } = wx[o];
      let s = 0;
      for (let k = 0; k < weights.length; k++) s += weights[k] * grey[base + first + k];
      rows[y * tw + o] = s;
    }
  }
  const patch = new Float64Array(th * tw); // vertical pass
  for (let o = 0; o < th; o++) {
    const { first, weights } = wy[o];
    for (let x = 0; x < tw; x++) {
      let s = 0;
      for (let k = 0; k < weights.length; k++) s += weights[k] * rows[(first + k) * tw + x];
      patch[o * tw + x] = s;
    }
  }
  let mass = 0, mx = 0, my = 0;
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      const v = patch[y * tw + x];
      mass += v;
      mx += v * x;
      my += v * y;
    }
  }
  const n = MNIST.size;
  const ox = Math.round(MNIST.centre - mx / mass);
  const oy = Math.round(MNIST.centre - my / mass);
  const out = new Float64Array(n * n);
  let peak = 0;
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      const tx = x + ox;
      const ty = y + oy;
      if (tx >= 0 && tx < n && ty >= 0 && ty < n) {
        out[ty * n + tx] = patch[y * tw + x];
        if (patch[y * tw + x] > peak) peak = patch[y * tw + x];
      }
    }
  }
  if (peak > 0) for (let i = 0; i < out.length; i++) out[i] = Math.round((out[i] * 255) / peak);
  return out;
}

// ----- talking to the server -------------------------------------------------------------------
class ApiError extends Error {}

/** One JSON call; resolves to ``{data, ms}``; rejects with a readable :class:`ApiError`. */
async function call(method, path, body) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, {
      method,
      cache: "no-store",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(`Cannot reach the server (${method} ${path}): ${err.message}`);
  }
  const text = await response.text();
  const ms = performance.now() - started;
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && typeof data.error === "string" ? data.error : text.slice(0, 300) || "no details";
    const retry = response.headers.get("Retry-After");
    const status = `${response.status}${response.statusText ? " " + response.statusText : ""}`;
    throw new ApiError(
      `The server answered ${status}: ${detail}` +
        (retry ? ` — retry in ${retry} s.` : "") + ` (${method} ${path})`,
    );
  }
  if (data === null) throw new ApiError(`The server's answer to ${method} ${path} is not JSON.`);
  return { data, ms };
}

// ----- small DOM helpers -----------------------------------------------------------------------
const $ = (selector) => document.querySelector(selector);

function element(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else el.setAttribute(k, v);
  }
  for (const child of children) el.append(child);
  return el;
}

function svgElement(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function showError(key, err) {
  const el = $(`#${key}-error`);
  el.textContent = err instanceof Error ? err.message : String(err);
  el.hidden = false;
}

function clearError(key) {
  const el = $(`#${key}-error`);
  el.textContent = "";
  el.hidden = true;
}

function setBusy(selector, busy) {
  $(selector).setAttribute("aria-busy", busy ? "true" : "false");
}

/** A metric for the model table: 4 significant digits, exponent form for very small or large values. */
function formatMetric(x) {
  if (typeof x !== "number" || !Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a >= 0.001 && a < 10000 ? String(Number(x.toPrecision(4))) : x.toExponential(2);
}

const formatSmall = (x) => (x === 0 ? "0" : x.toExponential(1));
const formatValue = (x) => String(Number(x.toPrecision(6)));

// ----- the model list --------------------------------------------------------------------------
const models = new Map(); // name -> the model document of GET /v1/models
let refreshing = false;

function versionOf(name, version) {
  return models.get(name)?.versions.find((v) => v.version === version) ?? null;
}

/** The version whose signature and example the page uses: the default one, else the newest described. */
function describedVersion(name) {
  const model = models.get(name);
  if (!model) return null;
  return (
    versionOf(name, model.default_version) ?? [...model.versions].reverse().find((v) => v.inputs) ?? null
  );
}

/** Input and output names, input shape, class labels and example of ``name`` (defaults until known). */
function signature(name) {
  const v = describedVersion(name);
  return {
    input: v?.inputs?.[0]?.name ?? null,
    shape: v?.inputs?.[0]?.shape ?? null,
    output: v?.outputs?.[0]?.name ?? null,
    labels: v?.class_labels ?? null,
    example: v?.example ?? null,
  };
}

function request(name, batch) {
  const { input } = signature(name);
  return { model: name, inputs: input ? { [input]: batch } : batch };
}

function firstOutput(name, outputs) {
  const { output } = signature(name);
  return output && output in outputs ? outputs[output] : Object.values(outputs)[0];
}

function answeredBy(name, data, ms) {
  const provider = versionOf(name, data.version)?.provider;
  const parts = [`${name} v${data.version}`, data.runtime];
  if (provider) parts.push(provider);
  if (ms !== undefined) parts.push(`${ms.toFixed(1)} ms`);
  return parts.join(" · ");
}

function stateCell(v) {
  const cell = element("td", {}, element("span", { class: `state state-${v.state}` }, v.state));
  if (v.error) cell.append(element("span", { class: "state-error" }, v.error));
  return cell;
}

function contractCell(v) {
  const cell = element("td", { class: "contract" });
  if (!v.inputs) {
    cell.append("–");
    return cell;
  }
  const spec = v.inputs.map((s) => `${s.name} ${s.dtype} [${s.shape.join(", ")}]`).join("; ");
  const details = element("details", {}, element("summary", {}, spec));
  details.append(element("p", {}, v.input_contract ?? ""));
  cell.append(details);
  return cell;
}

function metricsCell(v) {
  const cell = element("td", { class: "metrics" });
  const entries = Object.entries(v.metrics ?? {}).filter(([k]) => k !== "train_seconds");
  cell.append(entries.length ? entries.map(([k, x]) => `${k} ${formatMetric(x)}`).join(", ") : "–");
  return cell;
}

function parityCell(v) {
  const cell = element("td", { class: "parity" });
  const p = v.parity;
  if (!p) {
    cell.append("–");
    return cell;
  }
  const worst = Math.max(p.onnx_vs_saved_model, p.onnx_vs_keras);
  cell.title = `ONNX vs SavedModel ${p.onnx_vs_saved_model}, ONNX vs .keras ${p.onnx_vs_keras}, tolerance ${p.tolerance}`;
  cell.append(`${formatSmall(worst)} ${p.passed ? "✓" : "✗"} (${p.samples} samples)`);
  return cell;
}

function renderModels() {
  const body = $("#models-table tbody");
  const rows = [];
  for (const model of models.values()) {
    if (!model.versions.length) {
      rows.push(
        element("tr", { "data-model": model.name },
          element("th", { scope: "row" }, model.name), element("td", {}, "–"),
          element("td", {}, element("span", { class: "state state-absent" }, "no versions")),
          element("td", { colspan: "4" }, "")),
      );
      continue;
    }
    for (const v of model.versions) {
      const isDefault = v.version === model.default_version;
      const runtime = v.provider ? `${v.runtime} · ${v.provider}` : v.runtime;
      rows.push(
        element("tr", { "data-model": model.name, "data-version": String(v.version) },
          element("th", { scope: "row" }, model.name),
          element("td", {}, isDefault ? `${v.version} (default)` : String(v.version)),
          stateCell(v), element("td", {}, runtime), contractCell(v), metricsCell(v), parityCell(v)),
      );
    }
  }
  if (!rows.length) rows.push(element("tr", {}, element("td", { colspan: "7" }, "The server serves no models.")));
  body.replaceChildren(...rows);
}

/** One line per panel: which version would answer, or why none can. */
function renderStatus(name) {
  const el = $(`#${name}-status`);
  const model = models.get(name);
  let text;
  let bad = true;
  if (!model) {
    text = `The server does not serve a model named "${name}" (it serves: ${[...models.keys()].join(", ") || "none"}).`;
  } else if (model.default_version === null) {
    const states = model.versions.map((v) => `v${v.version} ${v.state}${v.error ? ": " + v.error : ""}`);
    text = `No ready version of ${name}: ${states.join("; ") || "no versions in the repository"}.`;
  } else {
    const v = versionOf(name, model.default_version);
    text = `Answering: ${name} v${v.version} · ${v.runtime}${v.provider ? " · " + v.provider : ""}`;
    const others = model.versions.filter((o) => o.version !== v.version).map((o) => `v${o.version} ${o.state}`);
    if (others.length) text += ` (also ${others.join(", ")})`;
    bad = false;
  }
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

async function refreshModels() {
  if (refreshing) return;
  refreshing = true;
  try {
    const { data } = await call("GET", "/v1/models");
    models.clear();
    for (const m of data.models) models.set(m.name, m);
    clearError("models");
    renderModels();
    for (const name of ["cnn", "mlp", "rnn", "linear"]) renderStatus(name);
    prefillMlp(false);
    $("#models-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    showError("models", `Cannot load the model list. ${err.message}`);
  } finally {
    refreshing = false;
  }
}

// ----- CNN: draw, upload, predict --------------------------------------------------------------
const canvas = $("#digit-canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
let uploaded = null; // {grey, width, height} of an uploaded picture until the next stroke
let pointer = null; // the pointer drawing now: {id, x, y}
let digitSeq = 0;

function clearCanvas() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  uploaded = null;
}

function clearDigitResult() {
  $("#digit-prediction").textContent = "–";
  $("#digit-answered").textContent = "–";
  $("#digit-latency").textContent = "–";
  $("#digit-chart").replaceChildren();
  $("#digit-chart").setAttribute("aria-label", "Class probabilities (no prediction yet)");
  $("#protocols").hidden = true;
  $("#digit-preview").getContext("2d").clearRect(0, 0, 28, 28);
  delete $("#digit-result").dataset.sent;
}

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * canvas.width) / rect.width,
    y: ((event.clientY - rect.top) * canvas.height) / rect.height,
  };
}

function stroke(from, to) {
  ctx.strokeStyle = "#fff";
  ctx.fillStyle = "#fff";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (from.x === to.x && from.y === to.y) {
    ctx.beginPath();
    ctx.arc(to.x, to.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  try {
    canvas.setPointerCapture(event.pointerId);
  } catch {
    // synthetic pointers cannot be captured; drawing works without capture
  }
  uploaded = null; // from now on the canvas (upload plus strokes) is the picture
  const p = canvasPoint(event);
  pointer = { id: event.pointerId, ...p };
  stroke(p, p);
});

canvas.addEventListener("pointermove", (event) => {
  if (!pointer || event.pointerId !== pointer.id) return;
  event.preventDefault();
  const events = event.getCoalescedEvents?.() ?? [];
  for (const e of events.length ? events : [event]) {
    const p = canvasPoint(e);
    stroke(pointer, p);
    pointer.x = p.x;
    pointer.y = p.y;
  }
});

function endStroke(event) {
  if (!pointer || event.pointerId !== pointer.id) return;
  pointer = null;
  predictDigit();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

/** Show a grey picture (white on black) on the drawing canvas, scaled to fit and centred. */
function showOnCanvas(grey, width, height) {
  const image = new ImageData(width, height);
  for (let i = 0; i < grey.length; i++) {
    const v = Math.max(0, Math.min(255, Math.round(grey[i])));
    image.data.set([v, v, v, 255], 4 * i);
  }
  const scratch = element("canvas", { width: String(width), height: String(height) });
  scratch.getContext("2d").putImageData(image, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const scale = Math.min(canvas.width / width, canvas.height / height);
  ctx.imageSmoothingEnabled = scale < 1;
  const w = width * scale;
  const h = height * scale;
  ctx.drawImage(scratch, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
}

async function loadPicture(file) {
  clearError("cnn");
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError("cnn", `"${file.name}" is not a picture (${file.type}); upload a PNG.`);
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    showError("cnn", `"${file.name}" could not be read as a picture; upload a PNG.`);
    return;
  }
  const scratch = element("canvas", { width: String(bitmap.width), height: String(bitmap.height) });
  const sctx = scratch.getContext("2d", { willReadFrequently: true });
  sctx.drawImage(bitmap, 0, 0);
  const grey = greyFromImageData(sctx.getImageData(0, 0, bitmap.width, bitmap.height), true);
  showOnCanvas(grey, bitmap.width, bitmap.height);
  uploaded = { grey, width: bitmap.width, height: bitmap.height };
  await predictDigit();
}

function drawPreview(pixels) {
  const image = new ImageData(28, 28);
  for (let i = 0; i < pixels.length; i++) image.data.set([pixels[i], pixels[i], pixels[i], 255], 4 * i);
  $("#digit-preview").getContext("2d").putImageData(image, 0, 0);
}

function renderBars(probabilities, labels) {
  const chart = $("#digit-chart");
  const best = probabilities.indexOf(Math.max(...probabilities));
  const width = 320, top = 18, bottom = 150, slot = width / probabilities.length;
  const nodes = [svgElement("line", { class: "axis", x1: 0, x2: width, y1: bottom, y2: bottom })];
  probabilities.forEach((p, i) => {
    const h = Math.max(0, Math.min(1, p)) * (bottom - top);
    const label = labels?.[i] ?? String(i);
    const bar = svgElement("rect", {
      class: i === best ? "bar best" : "bar",
      x: (i * slot + 4).toFixed(1), y: (bottom - h).toFixed(2), width: (slot - 8).toFixed(1),
      height: h.toFixed(2), "data-label": label, "data-probability": p,
    });
    bar.append(svgElement("title", {}, `${label}: ${(100 * p).toFixed(1)} %`));
    nodes.push(bar, svgElement("text", { x: (i * slot + slot / 2).toFixed(1), y: 165, "text-anchor": "middle" }, label));
  });
  nodes.push(
    svgElement("text", { x: (best * slot + slot / 2).toFixed(1), y: 13, "text-anchor": "middle" },
      `${(100 * probabilities[best]).toFixed(1)} %`),
  );
  chart.replaceChildren(...nodes);
  const summary = probabilities.map((p, i) => `${labels?.[i] ?? i}: ${(100 * p).toFixed(1)} %`).join(", ");
  chart.setAttribute("aria-label", `Class probabilities: ${summary}`);
  return best;
}

function greyOfPicture() {
  if (uploaded) return uploaded;
  const grey = greyFromImageData(ctx.getImageData(0, 0, canvas.width, canvas.height), false);
  return { grey, width: canvas.width, height: canvas.height };
}

async function predictDigit() {
  clearError("cnn");
  const picture = greyOfPicture();
  const pixels = mnistStyle(picture.grey, picture.width, picture.height);
  if (!pixels) {
    clearDigitResult();
    showError("cnn", "There is nothing to recognise yet: draw a digit, upload a PNG or load a test digit.");
    return;
  }
  drawPreview(pixels);
  const rows = [];
  for (let y = 0; y < 28; y++) rows.push(Array.from(pixels.slice(28 * y, 28 * y + 28), (v) => [v]));
  const batch = [rows];
  const seq = ++digitSeq;
  setBusy("#digit-result", true);
  try {
    const { data, ms } = await call("POST", "/v1/predict", request("cnn", batch));
    if (seq !== digitSeq) return;
    const probabilities = firstOutput("cnn", data.outputs)[0];
    const { labels } = signature("cnn");
    const best = renderBars(probabilities, labels);
    $("#digit-prediction").textContent = labels?.[best] ?? String(best);
    $("#digit-answered").textContent = answeredBy("cnn", data);
    $("#digit-latency").textContent = `${ms.toFixed(1)} ms`;
    $("#digit-result").dataset.sent = String(seq);
    if ($("#digit-compare").checked) await compareProtocols(batch, pixels, data, probabilities, ms);
    else $("#protocols").hidden = true;
  } catch (err) {
    if (seq !== digitSeq) return;
    clearDigitResult();
    showError("cnn", err);
  } finally {
    if (seq === digitSeq) setBusy("#digit-result", false);
  }
}

async function compareProtocols(batch, pixels, native, reference, nativeMs) {
  const { input, output } = signature("cnn");
  const v = native.version;
  const argmax = (row) => row.indexOf(Math.max(...row));
  const results = [{ protocol: "native /v1/predict", version: v, row: reference, ms: nativeMs }];
  const attempts = [
    ["TF Serving REST", async () => {
      const { data, ms } = await call("POST", `/v1/models/cnn/versions/${v}:predict`, { instances: batch });
      return { version: v, row: data.predictions[0], ms };
    }],
    ["KServe V2 REST", async () => {
      const body = { inputs: [{ name: input ?? "pixels", shape: [1, 28, 28, 1], datatype: "FP32", data: Array.from(pixels) }] };
      const { data, ms } = await call("POST", `/v2/models/cnn/versions/${v}/infer`, body);
      const out = data.outputs.find((o) => o.name === output) ?? data.outputs[0];
      return { version: Number(data.model_version), row: out.data, ms };
    }],
  ];
  for (const [protocol, run] of attempts) {
    try {
      results.push({ protocol, ...(await run()) });
    } catch (err) {
      results.push({ protocol, error: err.message });
    }
  }
  const rows = results.map((r) => {
    if (r.error) return element("tr", {}, element("th", { scope: "row" }, r.protocol), element("td", { colspan: "4" }, r.error));
    const diff = Math.max(...r.row.map((x, i) => Math.abs(x - reference[i])));
    r.diff = diff;
    return element("tr", { "data-protocol": r.protocol },
      element("th", { scope: "row" }, r.protocol), element("td", {}, `v${r.version}`),
      element("td", {}, String(argmax(r.row))), element("td", {}, formatSmall(diff)),
      element("td", {}, `${r.ms.toFixed(1)} ms`));
  });
  $("#protocols-table tbody").replaceChildren(...rows);
  const verdict = $("#protocols-verdict");
  const agree = results.every((r) => !r.error && argmax(r.row) === argmax(reference) && r.diff <= 1e-6 && r.version === v);
  verdict.textContent = agree
    ? `All three protocols agree: digit ${argmax(reference)} from v${v}, largest difference ${formatSmall(Math.max(...results.map((r) => r.diff)))}.`
    : "The protocols do not agree (see the table).";
  verdict.className = agree ? "agree" : "disagree";
  $("#protocols").hidden = false;
}

function loadTestDigit() {
  const { example, input } = signature("cnn");
  const digit = example ? (example[input] ?? Object.values(example)[0])?.[0] : null;
  if (!digit) {
    showError("cnn", "The server has not described a CNN example yet (see the model list).");
    return;
  }
  const grey = Float64Array.from(digit.flat(2));
  showOnCanvas(grey, 28, 28);
  uploaded = { grey, width: 28, height: 28 };
  predictDigit();
}

$("#digit-clear").addEventListener("click", () => {
  clearCanvas();
  clearDigitResult();
  clearError("cnn");
});
$("#digit-predict").addEventListener("click", () => predictDigit());
$("#digit-example").addEventListener("click", loadTestDigit);
$("#digit-file").addEventListener("change", (event) => {
  loadPicture(event.target.files[0]);
  event.target.value = "";
});
$("#digit-compare").addEventListener("change", () => {
  if ($("#digit-result").dataset.sent) predictDigit();
});
const dropZone = $("#drop-zone");
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  loadPicture(event.dataTransfer?.files?.[0]);
});

// ----- MLP -------------------------------------------------------------------------------------
let mlpFilled = false;

function buildMlpFields() {
  const fields = MLP_FEATURES.map(([name, text], i) =>
    element("label", { for: `mlp-f${i}` }, text,
      element("input", { type: "number", step: "any", id: `mlp-f${i}`, name, required: "" })),
  );
  $("#mlp-fields").replaceChildren(...fields);
}

/** Fill the form with the held-out test patient of the model's metadata (once, or on ``force``). */
function prefillMlp(force) {
  if (mlpFilled && !force) return;
  const { example, input } = signature("mlp");
  const row = example ? (example[input] ?? Object.values(example)[0])?.[0] : null;
  if (!row) return;
  row.forEach((value, i) => {
    const field = $(`#mlp-f${i}`);
    if (field) field.value = String(value);
  });
  mlpFilled = true;
}

/** The numbers of ``fields``; throws a readable error naming the first field that is not a number. */
function numbersOf(fields) {
  return fields.map((field) => {
    const text = field.value.trim();
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) {
      const name = field.labels?.[0]?.textContent ?? field.name;
      throw new Error(`"${name}" needs a number${text ? `, not "${text}"` : ""}.`);
    }
    return value;
  });
}

$("#mlp-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError("mlp");
  setBusy("#mlp-output", true);
  try {
    const features = numbersOf([...document.querySelectorAll("#mlp-fields input")]);
    const { data, ms } = await call("POST", "/v1/predict", request("mlp", [features]));
    const p = firstOutput("mlp", data.outputs)[0][0];
    const labels = signature("mlp").labels;
    const result = $("#mlp-result");
    result.textContent = `${p.toFixed(4)}` + (labels ? ` → ${p > 0.5 ? labels[1] : labels[0]}` : "");
    result.dataset.value = String(p);
    $("#mlp-answered").textContent = answeredBy("mlp", data, ms);
  } catch (err) {
    $("#mlp-result").textContent = "–";
    delete $("#mlp-result").dataset.value;
    $("#mlp-answered").textContent = "–";
    showError("mlp", err);
  } finally {
    setBusy("#mlp-output", false);
  }
});
$("#mlp-reset").addEventListener("click", () => prefillMlp(true));

// ----- RNN -------------------------------------------------------------------------------------
function rnnLength() {
  return signature("rnn").shape?.[1] ?? 10;
}

function generateSequence() {
  const n = rnnLength();
  const base = 24.5 + 2 * Math.random();
  const amplitude = 0.8 + Math.random();
  const phase = 2 * Math.PI * Math.random();
  const values = Array.from({ length: n }, (_, k) =>
    (base + amplitude * Math.sin(phase + (2 * Math.PI * k) / 12) + 0.2 * (Math.random() - 0.5)).toFixed(2));
  $("#rnn-values").value = values.join(", ");
}

function useTestWindow() {
  const { example, input } = signature("rnn");
  const window_ = example ? (example[input] ?? Object.values(example)[0])?.[0] : null;
  if (!window_) {
    showError("rnn", "The server has not described an RNN example yet (see the model list).");
    return;
  }
  $("#rnn-values").value = window_.flat().join(", ");
}

function renderSequence(values, next) {
  const chart = $("#rnn-chart");
  const all = [...values, next];
  const lo = Math.min(...all), hi = Math.max(...all);
  const pad = (hi - lo) * 0.1 || 0.5;
  const left = 42, right = 310, top = 12, bottom = 150;
  const x = (i) => left + ((right - left) * i) / values.length;
  const y = (v) => bottom - ((bottom - top) * (v - (lo - pad))) / (hi - lo + 2 * pad);
  const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const nodes = [
    svgElement("line", { class: "axis", x1: left, x2: right, y1: bottom, y2: bottom }),
    svgElement("line", { class: "axis", x1: left, x2: left, y1: top, y2: bottom }),
    svgElement("text", { x: left - 4, y: y(hi) + 4, "text-anchor": "end" }, hi.toFixed(1)),
    svgElement("text", { x: left - 4, y: y(lo) + 4, "text-anchor": "end" }, lo.toFixed(1)),
    svgElement("text", { x: (left + right) / 2, y: 166, "text-anchor": "middle" }, "month (the last point is the prediction)"),
    svgElement("polyline", { class: "series", points }),
    svgElement("line", { class: "next-link", x1: x(values.length - 1), y1: y(values.at(-1)), x2: x(values.length), y2: y(next) }),
  ];
  values.forEach((v, i) => {
    const dot = svgElement("circle", { class: "point", cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3.5 });
    dot.append(svgElement("title", {}, `month ${i + 1}: ${v} °C`));
    nodes.push(dot);
  });
  const dot = svgElement("circle", { class: "next", cx: x(values.length).toFixed(1), cy: y(next).toFixed(1), r: 5 });
  dot.append(svgElement("title", {}, `predicted: ${next.toFixed(2)} °C`));
  nodes.push(dot);
  chart.replaceChildren(...nodes);
  chart.setAttribute("aria-label", `Sequence ${values.join(", ")} °C, then the predicted ${next.toFixed(2)} °C`);
}

$("#rnn-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError("rnn");
  setBusy("#rnn-output", true);
  try {
    const text = $("#rnn-values").value.trim();
    const parts = text ? text.split(/[\s,;]+/).filter(Boolean) : [];
    const values = parts.map(Number);
    const bad = parts.find((p, i) => !Number.isFinite(values[i]));
    if (bad !== undefined) throw new Error(`"${bad}" is not a number.`);
    const n = rnnLength();
    if (values.length !== n) throw new Error(`The model takes exactly ${n} values; there are ${values.length}.`);
    const { data, ms } = await call("POST", "/v1/predict", request("rnn", [values.map((v) => [v])]));
    const next = firstOutput("rnn", data.outputs)[0][0];
    const result = $("#rnn-result");
    result.textContent = `${next.toFixed(2)} °C`;
    result.dataset.value = String(next);
    $("#rnn-answered").textContent = answeredBy("rnn", data, ms);
    renderSequence(values, next);
  } catch (err) {
    $("#rnn-result").textContent = "–";
    delete $("#rnn-result").dataset.value;
    $("#rnn-chart").replaceChildren();
    showError("rnn", err);
  } finally {
    setBusy("#rnn-output", false);
  }
});
$("#rnn-generate").addEventListener("click", generateSequence);
$("#rnn-example").addEventListener("click", useTestWindow);

// ----- linear ----------------------------------------------------------------------------------
$("#linear-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError("linear");
  setBusy("#linear-output", true);
  try {
    const [x] = numbersOf([$("#linear-x")]);
    const { data, ms } = await call("POST", "/v1/predict", request("linear", [[x]]));
    const y = firstOutput("linear", data.outputs)[0][0];
    const result = $("#linear-result");
    result.textContent = `f(${x}) = ${formatValue(y)}`;
    result.dataset.value = String(y);
    $("#linear-answered").textContent = answeredBy("linear", data, ms);
  } catch (err) {
    $("#linear-result").textContent = "–";
    delete $("#linear-result").dataset.value;
    showError("linear", err);
  } finally {
    setBusy("#linear-output", false);
  }
});

// ----- start -----------------------------------------------------------------------------------
function pageError(message) {
  const el = $("#page-error");
  el.textContent = `Something went wrong on this page: ${message}`;
  el.hidden = false;
}
window.addEventListener("error", (event) => pageError(event.message));
window.addEventListener("unhandledrejection", (event) => pageError(event.reason?.message ?? String(event.reason)));

// For tests and the browser console: the preprocessing, exactly as the page uses it.
window.playground = { MNIST, mnistStyle, greyFromImageData };

buildMlpFields();
clearCanvas();
generateSequence();
$("#models-refresh").addEventListener("click", refreshModels);
refreshModels();
setInterval(() => {
  if (!document.hidden) refreshModels();
}, REFRESH_MS);
