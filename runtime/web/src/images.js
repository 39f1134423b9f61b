/**
 * Browser images -> the model's input: draws any CanvasImageSource (an <img>, a video frame, an
 * ImageBitmap, a canvas) scaled to the model's height x width and returns its grey, RGB or RGBA
 * pixels back to back, as uint8, or as float32 mapped from 0..255 onto the range the app feeds
 * (the model's input range, e.g. pixels / 255 for [0, 1]; 0..255 when the model records none).
 */

import {IMAGE_KIND} from './contract.js';
import {InvalidInputError} from './errors.js';

export function pixelsFromImage(source, model) {
  const {name, kind, dtype, shape, range} = model.inputSpec;
  if (kind !== IMAGE_KIND) {
    throw new InvalidInputError(`${name}: the model's input is a ${dtype} tensor [${shape}], not an image; ` +
                                'pixelsFromImage makes images only: pass its values as a typed array');
  }
  const [height, width, channels] = shape;
  if (shape.length !== 3 || ![1, 3, 4].includes(channels) || !['uint8', 'float32'].includes(dtype)) {
    throw new InvalidInputError(`${name}: the model takes ${dtype} [${shape}] images; pixelsFromImage makes uint8 or float32 [height, width, 1, 3 or 4]`);
  }
  const canvas = typeof OffscreenCanvas === 'function' ? new OffscreenCanvas(width, height)
                                                       : Object.assign(document.createElement('canvas'), {width, height});
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.drawImage(source, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const [low, high] = range ?? [0, 255];
  const pixels = dtype === 'uint8' ? new Uint8Array(height * width * channels) : new Float32Array(height * width * channels);
  // [0, 1]: low + (v / 255) * 1 is v / 255 exactly; [-1, 1]: v / 127.5 - 1 up to rounding.
  const scale = dtype === 'uint8' ? (value) => value : (value) => low + (value / 255) * (high - low);
  for (let i = 0; i < height * width; i++) {
    if (channels === 1) pixels[i] = scale(Math.round((rgba[i * 4] + rgba[i * 4 + 1] + rgba[i * 4 + 2]) / 3));
    else for (let c = 0; c < channels; c++) pixels[i * channels + c] = scale(rgba[i * 4 + c]);
  }
  return pixels;
}
