// The page: each picked or dropped image is posted on its own to /predict (the server
// batches concurrent requests), shown as a tile with its label and confidence, framed
// and labelled in its class's colour (GET /model: pyimagesearch/core/palette.py).
"use strict";

const tiles = document.getElementById("tiles");
const summary = document.getElementById("summary");
const input = document.getElementById("files");
const drop = document.getElementById("drop");
const PARALLEL = 8; // requests in flight at once
const counts = new Map(); // label -> images
let errors = 0;
let pending = 0;

// The model's description; {} when it cannot be had (tiles then keep the neutral frame).
const modelReady = fetch("/model")
  .then((response) => response.json())
  .then((model) => {
    const metrics = (model.provenance && model.provenance.final_metrics) || {};
    const accuracy = typeof metrics.test_accuracy === "number"
      ? `, test accuracy ${(100 * metrics.test_accuracy).toFixed(1)}%` : "";
    const saved = model.provenance && model.provenance.saved_at
      ? `, saved ${model.provenance.saved_at}` : "";
    document.getElementById("model").textContent =
      `Model ${model.file}: ${model.class_names.join(" / ")}${saved}${accuracy}.`;
    return model;
  })
  .catch(() => {
    document.getElementById("model").textContent = "Model details unavailable.";
    return {};
  });

function showSummary() {
  const done = [...counts.values()].reduce((a, b) => a + b, 0);
  const parts = [...counts.entries()].map(([label, n]) => `${n} ${label}`);
  if (errors) parts.push(`${errors} unreadable`);
  const waiting = pending ? ` (${pending} waiting)` : "";
  summary.textContent = `${done + errors} image${done + errors === 1 ? "" : "s"}: ${parts.join(", ")}${waiting}`;
}

function addTile(file) {
  const tile = document.createElement("li");
  tile.className = "tile";
  const image = document.createElement("img");
  image.alt = file.name;
  image.src = URL.createObjectURL(file);
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = file.name; // textContent: a file name is never markup
  name.title = file.name;
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = "…";
  tile.append(image, name, label);
  tiles.append(tile);
  return tile;
}

function showResult(tile, prediction, model) {
  const confidence = prediction.probabilities[prediction.label];
  const label = tile.querySelector(".label");
  label.textContent = `${prediction.label} ${(100 * confidence).toFixed(1)}%`;
  // Colours through the element's style (CSSOM), which the page's CSP allows.
  const colours = model.colours || {};
  if (Object.hasOwn(colours, prediction.label)) {
    tile.style.borderColor = colours[prediction.label];
    label.style.color = colours[prediction.label];
    if (model.label_box) label.style.backgroundColor = model.label_box;
  }
  tile.dataset.label = prediction.label; // last: tests wait for it
  counts.set(prediction.label, (counts.get(prediction.label) || 0) + 1);
}

function showError(tile, reason) {
  tile.classList.add("failed"); // a class, not a label: a class may be named "error"
  tile.querySelector(".label").textContent = reason;
  errors += 1;
}

async function classify(file, tile) {
  const body = new FormData();
  body.append("files", file, file.name);
  try {
    const response = await fetch("/predict", { method: "POST", body });
    const answer = await response.json().catch(() => ({ reason: `HTTP ${response.status}` }));
    if (response.ok) showResult(tile, answer.predictions[0], await modelReady);
    else showError(tile, answer.reason || answer.error || `HTTP ${response.status}`);
  } catch (error) {
    showError(tile, "the server did not answer");
  }
  pending -= 1;
  showSummary();
}

async function handle(files) {
  const queue = [...files].map((file) => [file, addTile(file)]);
  pending += queue.length;
  showSummary();
  const worker = async () => {
    while (queue.length) {
      const [file, tile] = queue.shift();
      await classify(file, tile);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

input.addEventListener("change", () => { handle(input.files); input.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  handle(event.dataTransfer.files);
});
