// Small display helpers shared by the panels.

/** 1536 -> "1.5 KiB". */
export function bytes(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Seconds as "12 s" / "3 min 5 s". */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function rate(tokensPerSecond) {
  return Number.isFinite(tokensPerSecond) && tokensPerSecond > 0 ? `${tokensPerSecond.toFixed(1)} tok/s` : '–';
}

/** Sets an element's text by id. */
export function setText(id, text) {
  document.getElementById(id).textContent = text;
}

/**
 * Tells the page that the engine can no longer run (its GPU device was lost,
 * or it crashed): app.js reloads the model (from the cache) on this event.
 */
export function reportEngineLost(error) {
  if (error?.code === 'device_lost' || error?.code === 'crashed') {
    document.dispatchEvent(new CustomEvent('hearth:engine-lost', { detail: error }));
  }
}
