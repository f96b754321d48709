// The chat page's language: ?lang= (for demos and tests), else the browser's first language
// that has a catalogue, else English. A catalogue is web/i18n-<lang>.json, compiled from
// locales/<lang>/LC_MESSAGES/tokenrelay.po by scripts/i18n.py (msgctxt "web"): the .po is
// the one source of each language. The English text is the message id.

export const LANGUAGES = ["en", "ko"];

function pick() {
  const asked = new URLSearchParams(location.search).get("lang");
  const wanted = [asked, ...(navigator.languages || [navigator.language])];
  for (const tag of wanted) {
    const primary = String(tag || "").toLowerCase().split(/[-_]/)[0];
    if (LANGUAGES.includes(primary)) return primary;
  }
  return "en";
}

export const lang = pick();
let texts = {};

export async function loadCatalogue() {
  if (lang === "en") return;
  try {
    const response = await fetch(`/static/i18n-${lang}.json`);
    if (response.ok) texts = await response.json();
  } catch (err) {
    console.warn(`no catalogue for ${lang}: ${err}`);
  }
}

// `t("Sources ({count})", { count: 3 })`: the message in the page's language, its {names}
// filled in.
export function t(id, values = {}) {
  const text = texts[id] || id;
  return text.replace(/\{(\w+)\}/g, (all, name) => (name in values ? String(values[name]) : all));
}

// Elements marked in index.html: `data-i18n` (the text) and `data-i18n-attr` (attributes).
// Marks <html data-lang-ready> when done (the tests wait for it).
export function translatePage(root = document) {
  document.documentElement.lang = lang;
  document.documentElement.dataset.langReady = "";
  for (const node of root.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.textContent.split(/\s+/).filter(Boolean).join(" "));
  }
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const name of node.dataset.i18nAttr.split(",")) {
      const value = node.getAttribute(name.trim());
      if (value) node.setAttribute(name.trim(), t(value));
    }
  }
}
