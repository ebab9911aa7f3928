# Generated from chapters/10_attention_maps.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/10_attention_maps.ipynb cell 3
"""Three views of attention maps: a seaborn grid, an ipywidgets view for JupyterLab and
a self-contained HTML dashboard (Chapter 10 of the book)."""

from __future__ import annotations

__all__ = [
    "plot_attention_grid", "attention_widget", "dashboard_html", "write_dashboard",
    "embed_dashboard",
]

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from gpt2scratch.attention_heads import check_maps  # section 10.2
from gpt2scratch.files import atomic_write


# %% chapters/10_attention_maps.ipynb cell 22
def plot_attention_grid(weights: torch.Tensor, title: str = "", size: float = 0.9):
    """One small map per head, layers as rows, heads as columns, in seaborn's "rocket"
    colour map (white = 0); the colour is the square root of the weight, so that weak
    but structured attention stays visible."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    L, H = check_maps(weights, min_tokens=1, dims=4).shape[:2]
    figsize = (size * H + 0.6, size * L + 0.6)
    fig, axes = plt.subplots(
        L, H, figsize=figsize, squeeze=False, gridspec_kw=dict(wspace=0.08, hspace=0.08)
    )
    cmap = sns.color_palette("rocket_r", as_cmap=True)
    for k, ax in enumerate(axes.flat):
        l, h = divmod(k, H)
        ax.imshow(weights[l, h].sqrt().numpy(), cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if l == L - 1:
            ax.set_xlabel(f"head {h}", fontsize=8)
        if h == 0:
            ax.set_ylabel(f"layer {l}", fontsize=8)
    fig.suptitle(title, y=0.9 + 0.02 * min(L, 5))
    return fig


# %% chapters/10_attention_maps.ipynb cell 52
def _heatmap_png(tokens: Sequence[str], weights: torch.Tensor, query: int, title: str):
    """One (T, T) map as PNG bytes, the query row outlined (matplotlib, no pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    T = len(tokens)
    fig = Figure(figsize=(6, 5.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(weights.sqrt().numpy(), cmap="Blues", vmin=0, vmax=1)
    labels = [repr(t)[1:-1] for t in tokens]
    step = max(1, T // 32)  # at most ~32 labels per axis
    ax.set_xticks(range(0, T, step), labels[::step], rotation=90, fontsize=7)
    ax.set_yticks(range(0, T, step), labels[::step], fontsize=7)
    ax.add_patch(Rectangle((-0.5, query - 0.5), query + 1, 1, fill=False, color="red"))
    ax.set_title(f"{title} (colour: sqrt of the weight)", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _top_keys(tokens: Sequence[str], row: torch.Tensor, k: int = 5) -> str:
    values, keys = row.topk(min(k, row.numel()))
    return ", ".join(
        f"{j} {tokens[j]!r} {v:.2f}" for v, j in zip(values.tolist(), keys)
    )


def attention_widget(tokens: Sequence[str], weights: torch.Tensor):
    """An ipywidgets view: layer and head sliders, a query-token picker, and the map,
    which is re-rendered in place (`.image.value`) whenever a control changes."""
    import ipywidgets as widgets

    L, H, T, _ = check_maps(weights, min_tokens=1, dims=4).shape
    layer = widgets.IntSlider(0, min=0, max=L - 1, description="layer")
    head = widgets.IntSlider(0, min=0, max=H - 1, description="head")
    pairs = [(f"{i}: {t!r}", i) for i, t in enumerate(tokens)]
    query = widgets.Dropdown(options=pairs, value=T - 1, description="query")
    image, keys = widgets.Image(format="png"), widgets.HTML()

    def redraw(_=None):
        l, h, q = layer.value, head.value, query.value
        image.value = _heatmap_png(tokens, weights[l, h], q, f"layer {l}, head {h}")
        top = html.escape(_top_keys(tokens, weights[l, h, q, : q + 1]))
        keys.value = f"query {q} {html.escape(repr(tokens[q]))} attends most to: {top}"

    for control in (layer, head, query):
        control.observe(redraw, names="value")
    redraw()
    view = widgets.VBox([widgets.HBox([layer, head]), query, image, keys])
    view.image, view.layer, view.head, view.query = image, layer, head, query
    bundle = view._repr_mimebundle_  # a static page shows only text/plain: say what it is
    note = "(attention view: layer and head sliders, query picker; live in JupyterLab)"
    view._repr_mimebundle_ = lambda **kw: {**bundle(**kw), "text/plain": note}
    return view


# %% chapters/10_attention_maps.ipynb cell 56
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>$TITLE</title>
<link rel="icon" href="data:,"><style>
body { font: 14px system-ui, sans-serif; margin: 12px; color: #222; }
#grid { display: grid; gap: 3px; align-items: center; justify-content: start; }
#grid canvas { cursor: pointer; border: 2px solid transparent; }
#grid canvas.on { border-color: #d33; }
#grid span, .note { font-size: 12px; color: #555; }
#controls { margin: 12px 0 4px; }
#scroll { max-height: 420px; overflow-y: auto; display: inline-block; }
table { border-collapse: collapse; }
th, td { padding: 2px 8px; text-align: right; border-bottom: 1px solid #ddd; }
th { cursor: pointer; background: #f2f2f2; position: sticky; top: 0; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
tr.on { background: #fde4e4; }
</style></head><body>
<h2>$TITLE</h2>
<p class="note">Click a thumbnail (or a table row) to open a head; pick a query token to
outline its row. Colour: square root of the weight (white 0, dark blue 1);
grey: the future, which a token cannot see.</p>
<div id="grid"></div>
<div id="controls">layer <select id="layer"></select> head <select id="head"></select>
query token <select id="query"></select></div>
<div id="detail"><h3 id="detail-title"></h3><p id="row"></p>
<canvas id="map"></canvas></div>
<h3>Per-head numbers (click a header to sort)</h3>
<div id="scroll"><table id="stats"><thead><tr></tr></thead><tbody></tbody></table></div>
<script type="application/json" id="data">$DATA</script>
<script>$SCRIPT</script>
</body></html>
"""


# %% chapters/10_attention_maps.ipynb cell 58
_SCRIPT_DATA = r"""
const D = JSON.parse(document.getElementById("data").textContent);
const L = D.layers, H = D.heads, tok = D.tokens, T = tok.length;
const names = Object.keys(D.stats);
const bytes = Uint8Array.from(atob(D.weights), c => c.charCodeAt(0));
const at = (l, h, i, j) => bytes[((l * H + h) * T + i) * T + j] / 255;
const $ = id => document.getElementById(id);
const S = {layer: 0, head: 0, query: T - 1};
const shade = v => {
  const s = Math.sqrt(v);
  return `rgb(${255 - 235 * s | 0},${255 - 190 * s | 0},${255 - 120 * s | 0})`;
};
const label = t => JSON.stringify(t).slice(1, -1);
function paint(cv, l, h, cell, pad) {
  const c = cv.getContext("2d");
  c.fillStyle = "#e4e4e4";
  c.fillRect(pad, pad, T * cell, T * cell);
  for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) {
    c.fillStyle = shade(at(l, h, i, j));
    c.fillRect(pad + j * cell, pad + i * cell, cell, cell);
  }
  return c;
}
function el(tag, props) { return Object.assign(document.createElement(tag), props); }
const grid = $("grid"), thumb = Math.max(1, Math.floor(64 / T));
grid.style.gridTemplateColumns = `auto repeat(${H}, auto)`;
grid.append(el("span", {}));
for (let h = 0; h < H; h++) grid.append(el("span", {textContent: "head " + h}));
for (let l = 0; l < L; l++) {
  grid.append(el("span", {textContent: "layer " + l}));
  for (let h = 0; h < H; h++) {
    const cv = el("canvas", {width: T * thumb, height: T * thumb,
                             title: `layer ${l}, head ${h}`});
    cv.dataset.layer = l;
    cv.dataset.head = h;
    paint(cv, l, h, thumb, 0);
    cv.onclick = () => show(l, h);
    grid.append(cv);
  }
}
const fill = (sel, labels) => labels.forEach((t, k) => sel.add(new Option(t, k)));
fill($("layer"), [...Array(L).keys()].map(String));
fill($("head"), [...Array(H).keys()].map(String));
fill($("query"), tok.map((t, i) => `${i}: ${label(t)}`));
$("layer").onchange = e => show(+e.target.value, S.head);
$("head").onchange = e => show(S.layer, +e.target.value);
$("query").onchange = e => { S.query = +e.target.value; show(S.layer, S.head); };
"""


# %% chapters/10_attention_maps.ipynb cell 60
_SCRIPT_VIEW = r"""
const fmt = v => v.toFixed(3);
function show(l, h) {
  Object.assign(S, {layer: l, head: h});
  $("layer").value = l; $("head").value = h; $("query").value = S.query;
  const cell = Math.max(4, Math.min(16, Math.floor(560 / T))), pad = 110, cv = $("map");
  cv.width = cv.height = pad + T * cell + 4;
  const c = paint(cv, l, h, cell, pad);
  c.fillStyle = "#222";
  c.font = `${Math.min(12, cell)}px sans-serif`;
  c.textBaseline = "middle";
  tok.forEach((t, i) => {
    const text = label(t).slice(0, 16), mid = pad + (i + 0.5) * cell;
    c.textAlign = "right";
    c.fillText(text, pad - 4, mid);
    c.save(); c.translate(mid, pad - 4); c.rotate(-Math.PI / 2);
    c.textAlign = "left"; c.fillText(text, 0, 0); c.restore();
  });
  c.strokeStyle = "#d33"; c.lineWidth = 2;
  c.strokeRect(pad, pad + S.query * cell, (S.query + 1) * cell, cell);
  Object.assign($("detail").dataset, {layer: l, head: h, query: S.query});
  $("detail-title").textContent = `layer ${l}, head ${h}` +
    names.map(n => `, ${n} ${fmt(D.stats[n][l][h])}`).join("");
  const top = [...Array(S.query + 1).keys()].map(j => [at(l, h, S.query, j), j])
    .sort((a, b) => b[0] - a[0]).slice(0, 5);
  $("row").textContent = `query ${S.query} "${label(tok[S.query])}" attends most to: ` +
    top.map(([v, j]) => `${j} "${label(tok[j])}" ${v.toFixed(2)}`).join(", ");
  for (const e of document.querySelectorAll("#grid canvas, #stats tbody tr")) {
    e.classList.toggle("on", +e.dataset.layer === l && +e.dataset.head === h);
  }
}
const columns = ["layer", "head", ...names], rows = [];
const header = $("stats").tHead.rows[0], body = $("stats").tBodies[0];
for (const n of columns) {
  const th = el("th", {textContent: n, onclick: () => sortBy(n)});
  th.dataset.key = n;
  header.append(th);
}
for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
  const tr = body.insertRow(), v = {layer: l, head: h};
  names.forEach(n => { v[n] = D.stats[n][l][h]; });
  Object.assign(tr.dataset, {layer: l, head: h});
  columns.forEach(n => {
    tr.insertCell().textContent = n in D.stats ? fmt(v[n]) : v[n];
  });
  tr.onclick = () => show(l, h);
  rows.push([v, tr]);
}
let sortKey = null, sortDir = 1;
function sortBy(n) {  // first click: largest first; a second click reverses
  sortDir = sortKey === n ? -sortDir : -1;
  sortKey = n;
  rows.sort((a, b) => sortDir * (a[0][n] - b[0][n]));
  rows.forEach(([, tr]) => body.append(tr));
  for (const th of header.cells) {
    th.className = th.dataset.key === n ? (sortDir > 0 ? "asc" : "desc") : "";
  }
}
show(0, 0);
"""


# %% chapters/10_attention_maps.ipynb cell 62
def dashboard_html(
    tokens: Sequence[str],
    weights: torch.Tensor,
    stats: dict | None = None,
    title: str = "Attention maps",
) -> str:
    """A self-contained HTML page (no server, no network) for (L, H, T, T) weights:
    overview grid, full map with token labels, and a sortable table of `stats`
    ({name: (L, H) tensor}, e.g. from head_stats). Weights are stored as uint8, base64
    encoded."""
    L, H, T, _ = check_maps(weights, min_tokens=1, dims=4).shape
    if len(tokens) != T:
        raise ValueError(f"got {len(tokens)} tokens for maps of T={T}")
    q = (weights.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    data = {
        "layers": L,
        "heads": H,
        "tokens": [str(t) for t in tokens],
        "weights": base64.b64encode(q.cpu().numpy().tobytes()).decode("ascii"),
        "stats": {
            k: torch.as_tensor(v).float().reshape(L, H).tolist()
            for k, v in (stats or {}).items()
        },
    }
    payload = json.dumps(data).replace("</", "<\\/")  # never closes the <script> tag
    page = _PAGE.replace("$TITLE", html.escape(title))
    page = page.replace("$SCRIPT", _SCRIPT_DATA + _SCRIPT_VIEW)
    return page.replace("$DATA", payload)  # last: the data may contain "$..."


def write_dashboard(
    path: str | os.PathLike,
    tokens: Sequence[str],
    weights: torch.Tensor,
    stats: dict | None = None,
    title: str = "Attention maps",
) -> Path:
    """Write dashboard_html(...) to `path` atomically; returns the path."""
    page = dashboard_html(tokens, weights, stats, title)
    return atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


def embed_dashboard(page: str, height: int | None = None):
    """The page in an <iframe srcdoc>, for a notebook output (and so a static book)."""
    from IPython.display import HTML

    if height is None:  # tall enough for the grid, the full map and the table
        data = json.loads(page.split('id="data">', 1)[1].split("</script>", 1)[0])
        L, T = data["layers"], len(data["tokens"])
        thumb, cell = max(1, 64 // T), max(4, min(16, 560 // T))
        height = 300 + L * (T * thumb + 7) + 115 + T * cell + 470
    frame = (
        f'<iframe srcdoc="{html.escape(page)}" sandbox="allow-scripts" '
        f'style="width: 100%; height: {height}px; border: 1px solid #ddd;"></iframe>'
    )
    return HTML(f"<div>{frame}</div>")  # a bare <iframe> makes IPython warn
