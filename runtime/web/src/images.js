/**
 * Browser images -> the model's input pixels: draws any CanvasImageSource (an <img>, a video
 * frame, an ImageBitmap, a canvas) scaled to the model's height x width and returns its RGB
 * (or grey) pixels back to back, as uint8 or as float32 mapped onto the base's pixel range.
 */

import {InvalidInputError} from './errors.js';

export function pixelsFromImage(source, model) {
  const [height, width, channels] = model.imageShape;
  if (model.imageShape.length !== 3 || ![1, 3].includes(channels)) {
    throw new InvalidInputError(`image: the model takes [${model.imageShape}] images; pixelsFromImage handles [height, width, 1 or 3]`);
  }
  const canvas = typeof OffscreenCanvas === 'function' ? new OffscreenCanvas(width, height)
                                                       : Object.assign(document.createElement('canvas'), {width, height});
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.drawImage(source, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const [low, high] = model.metadata.imageRange ?? [0, 255];
  const pixels = model.imageDtype === 'uint8' ? new Uint8Array(height * width * channels) : new Float32Array(height * width * channels);
  const scale = model.imageDtype === 'uint8' ? (value) => value : (value) => low + (value / 255) * (high - low);
  for (let i = 0; i < height * width; i++) {
    if (channels === 3) {
      for (let c = 0; c < 3; c++) pixels[i * 3 + c] = scale(rgba[i * 4 + c]);
    } else {
      pixels[i] = scale(Math.round((rgba[i * 4] + rgba[i * 4 + 1] + rgba[i * 4 + 2]) / 3));
    }
  }
  return pixels;
}
