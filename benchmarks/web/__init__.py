"""The browser runtime's latency: LiteRT.js (wasm) in headless Chromium beside native LiteRT."""
