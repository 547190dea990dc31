// Small DOM helpers. Text from the API is only ever set as text, never parsed as HTML.

/** An element with attributes (on* keys become listeners) and children (strings as text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** A copy of a <template>'s content. */
export function fromTemplate(id) {
  return document.getElementById(id).content.cloneNode(true);
}

/** Show an error (an ApiError, or any Error) in an element, as "code: message". */
export function showError(element, error) {
  element.textContent = error.shown ?? `${error.name}: ${error.message}`;
  element.hidden = false;
}

export function hideError(element) {
  element.textContent = "";
  element.hidden = true;
}

/** A time as the reader's locale shows it, with the ISO time as a tooltip. */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return h("time", { datetime: iso, title: iso }, date.toLocaleString());
}

export function bytes(size) {
  if (size === undefined || size === null) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function seconds(from, to) {
  if (!from) return "—";
  const end = to ? new Date(to) : new Date();
  const s = (end - new Date(from)) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** A status as a badge that reads the same to a screen reader. */
export function badge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

/** A message for the whole page, for an error an action cannot show next to itself. */
export function announce(error) {
  const notice = document.getElementById("notice");
  showError(notice, error);
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => hideError(notice), 10000);
}
