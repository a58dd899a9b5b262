// The upload page: POST the chosen file to /predict (?maps=1) and show the answer. No external resources.
"use strict";

const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function fmt(x) {
  return (typeof x === "number") ? x.toFixed(3) : "n/a";
}

async function loadInfo() {
  try {
    const info = await (await fetch("/info")).json();
    const m = info.model || {};
    $("model").textContent = `${m.name} (${m.backbone}), ${info.class_names.length} classes, ` +
      `${info.image_size} px input, version ${info.version}`;
    const rows = Object.entries(info.metrics || {}).map(([split, node]) => {
      const ci = node.ci95 || {};
      const cell = (k) => fmt(node[k]) + (ci[k] ? ` [${fmt(ci[k][0])}, ${fmt(ci[k][1])}]` : "");
      const key = info.task === "multilabel" ? "map" : "balanced_accuracy";
      return `<tr><td>${split}</td><td class="p">${cell(key)}</td><td class="p">${cell("macro_auc")}</td></tr>`;
    });
    if (rows.length) {
      const key = info.task === "multilabel" ? "mAP" : "balanced accuracy";
      $("metrics").innerHTML = `<table><thead><tr><th>split</th><th>${key} [95% CI]</th><th>macro AUC [95% CI]</th>` +
        `</tr></thead><tbody>${rows.join("")}</tbody></table>` +
        `<p class="note">Measured on the run's own test data; see the model card (GET /info).</p>`;
      $("metrics-section").hidden = false;
    }
  } catch (err) {
    $("model").textContent = "could not read /info: " + err;
  }
}

function showResult(answer, file) {
  $("predicted").textContent = answer.predicted;
  $("input-image").src = URL.createObjectURL(file);
  const body = $("probabilities").querySelector("tbody");
  body.innerHTML = "";
  const entries = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of entries) {
    const tr = document.createElement("tr");
    tr.dataset.class = name;
    if (name === answer.predicted) tr.className = "top";
    const cells = [name, p.toFixed(3)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 1) td.className = "p";
      tr.appendChild(td);
    });
    const bar = document.createElement("td");
    bar.innerHTML = `<span class="bar" style="width:${Math.round(160 * p)}px"></span>`;
    tr.appendChild(bar);
    body.appendChild(tr);
  }
  if (answer.overlay) {
    $("overlay").src = "data:image/png;base64," + answer.overlay.png_base64;
    $("overlay-caption").textContent = `attention: ${answer.overlay.map} (${answer.overlay.class})`;
    $("overlay-figure").hidden = false;
  } else {
    $("overlay-figure").hidden = true;
  }
  $("version").textContent = `model version ${answer.version}`;
  $("result").hidden = false;
}

$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  $("error").hidden = true;
  if (!file) { showError("Choose an image file first."); return; }
  const form = new FormData();
  form.append("file", file);
  $("submit").disabled = true;
  $("status").hidden = false;
  try {
    const response = await fetch("/predict" + ($("maps").checked ? "?maps=1" : ""), {method: "POST", body: form});
    const answer = await response.json();
    if (!response.ok) { showError(`${answer.error}: ${answer.detail}`); $("result").hidden = true; return; }
    showResult(answer, file);
  } catch (err) {
    showError("The server did not answer: " + err);
  } finally {
    $("submit").disabled = false;
    $("status").hidden = true;
  }
});

loadInfo();
