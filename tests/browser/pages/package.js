// package.html's script: the built npm package as window.hearth.
try {
  window.hearth = await import('/hearth/index.js');
  window.hearthReady = true;
} catch (e) {
  window.hearthReady = e instanceof Error ? e.message : String(e);
}
