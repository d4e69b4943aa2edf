// One viewport's stream (schemas/render-stream.md): the WebSocket, the H.264 decoder
// (WebCodecs, Annex B without description, optimised for latency) drawing to the viewport's
// OffscreenCanvas, and the lossless still, shown only when its CRC-32 matches what is drawn.
// The page sends view states here; this worker sends back what was painted.

import { FLAG_KEYFRAME, FLAG_RGB, KIND_FRAME, KIND_STILL } from "./protocol.js";

let canvas = null;
let ctx = null;
let url = null;
let ws = null;
let closed = false;
let retry = 500;
let openMessage = null;
let lastView = null;
let playing = null;
let decoder = null;
let codec = null;
let size = [0, 0];
let pendingStill = null;
let lastPainted = 0;
const frames = new Map();

self.onmessage = (e) => {
  const m = e.data;
  if (m.type === "init") {
    canvas = m.canvas;
    ctx = canvas.getContext("2d", { alpha: false });
    url = m.url;
    connect();
  } else if (m.type === "open") {
    openMessage = m.message;
    lastView = null;
    playing = null;
    send(openMessage);
  } else if (m.type === "view") {
    lastView = { ...(lastView || {}), ...m.message };
    send(m.message);
  } else if (m.type === "cine") {
    playing = m.message.type === "play" ? m.message : null;
    send(m.message);
  } else if (m.type === "close") {
    closed = true;
    if (ws) ws.close();
    if (decoder && decoder.state !== "closed") decoder.close();
  }
};

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function connect() {
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    retry = 500;
    self.postMessage({ type: "status", connected: true });
    // A reconnect picks up where the view was: the series, then the whole last state.
    if (openMessage) send(openMessage);
    if (lastView) send({ ...lastView, type: "view" });
    if (playing) send(playing);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") self.postMessage({ type: "text", message: JSON.parse(ev.data) });
    else binary(ev.data);
  };
  ws.onclose = () => {
    if (closed) return;
    self.postMessage({ type: "status", connected: false });
    resetDecoder();
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 8000);
  };
}

function resetDecoder() {
  if (decoder && decoder.state !== "closed") decoder.close();
  decoder = null;
  codec = null;
  frames.clear();
  pendingStill = null;
}

/** The codec string of the SPS in an Annex B access unit: avc1.PPCCLL. */
function codecOf(au) {
  for (let i = 0; i + 4 < au.length; i++) {
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1 && (au[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, "0");
      return `avc1.${hex(au[i + 4])}${hex(au[i + 5])}${hex(au[i + 6])}`;
    }
  }
  return null;
}

function binary(buffer) {
  const v = new DataView(buffer);
  const kind = v.getUint8(0);
  const flags = v.getUint8(1);
  const header = v.getUint16(2, true);
  const h = {
    frame: v.getUint32(4, true), seq: v.getUint32(8, true), slice: v.getUint32(12, true),
    width: v.getUint16(16, true), height: v.getUint16(18, true),
    waitUs: v.getUint32(20, true), renderUs: v.getUint32(24, true), encodeUs: v.getUint32(28, true),
    crc: v.getUint32(32, true), x: v.getInt32(36, true), y: v.getInt32(40, true),
    key: (flags & FLAG_KEYFRAME) !== 0, rgb: (flags & FLAG_RGB) !== 0,
  };
  const payload = new Uint8Array(buffer, header);
  if (kind === KIND_FRAME) frame(h, payload);
  else if (kind === KIND_STILL) still(h, payload);
}

function frame(h, payload) {
  if (h.key) {
    const c = codecOf(payload);
    if (!decoder || decoder.state === "closed" || c !== codec || h.width !== size[0] || h.height !== size[1]) {
      if (decoder && decoder.state !== "closed") decoder.close();
      codec = c;
      size = [h.width, h.height];
      decoder = new VideoDecoder({ output: painted, error: (e) => {
        self.postMessage({ type: "error", message: `video decoder: ${e.message}` });
        decoder = null;
        send({ type: "keyframe" });
      } });
      decoder.configure({ codec, optimizeForLatency: true });
    }
  }
  if (!decoder || decoder.state !== "configured") {
    send({ type: "keyframe" });
    return;
  }
  frames.set(h.frame, h);
  decoder.decode(new EncodedVideoChunk({ type: h.key ? "key" : "delta", timestamp: h.frame, data: payload }));
}

function painted(videoFrame) {
  const h = frames.get(videoFrame.timestamp);
  frames.delete(videoFrame.timestamp);
  if (canvas.width !== videoFrame.displayWidth || canvas.height !== videoFrame.displayHeight) {
    canvas.width = videoFrame.displayWidth;
    canvas.height = videoFrame.displayHeight;
  }
  ctx.drawImage(videoFrame, 0, 0);
  videoFrame.close();
  lastPainted = h ? h.frame : lastPainted;
  send({ type: "ack", frame: lastPainted });
  // when it was drawn (on the page's clock, whatever the page's thread is busy with): the
  // canvas reaches the screen from here without it
  const at = performance.timeOrigin + performance.now();
  if (h) self.postMessage({ type: "painted", frame: h.frame, seq: h.seq, slice: h.slice, serverUs: h.renderUs + h.encodeUs, renderUs: h.renderUs, at });
  if (pendingStill && pendingStill.h.frame === lastPainted) {
    const s = pendingStill;
    pendingStill = null;
    applyStill(s.h, s.payload);
  }
}

function still(h, payload) {
  if (h.frame === lastPainted) applyStill(h, payload);
  else pendingStill = { h, payload };
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of the 8-bit samples of RGBA pixels: one (grey) or three (RGB) per pixel. */
function crc32(rgba, channels) {
  let c = 0xffffffff;
  for (let i = 0; i < rgba.length; i += 4) {
    for (let k = 0; k < channels; k++) c = CRC_TABLE[(c ^ rgba[i + k]) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

async function applyStill(h, payload) {
  try {
    const bitmap = await createImageBitmap(new Blob([payload], { type: "image/png" }),
      { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const scratch = new OffscreenCanvas(bitmap.width, bitmap.height);
    const sctx = scratch.getContext("2d", { willReadFrequently: true });
    sctx.drawImage(bitmap, 0, 0);
    const image = sctx.getImageData(0, 0, bitmap.width, bitmap.height);
    const ok = crc32(image.data, h.rgb ? 3 : 1) === h.crc;
    // Only if no newer frame was painted meanwhile: the still completes that frame only.
    if (ok && h.frame === lastPainted) ctx.putImageData(image, h.x, h.y);
    self.postMessage({ type: "lossless", ok: ok && h.frame === lastPainted, frame: h.frame });
  } catch (e) {
    self.postMessage({ type: "lossless", ok: false, frame: h.frame, message: String(e) });
  }
}
