/**
 * JSON.parse that refuses duplicate object keys (readers disagree on which duplicate wins;
 * runtime/SPEC.md#checkpoint-file-format says refuse). Linear time: one pass over the text to find
 * every object's keys (a Set per open object), then JSON.parse for the values. Throws SyntaxError.
 */

export function parseStrictJson(text) {
  const value = JSON.parse(text);  // syntax errors first, with the engine's message
  const open = [];                 // per nesting level: a Set of keys, or null for an array
  let index = 0;
  while (index < text.length) {
    const char = text[index];
    if (char === '{') {
      open.push(new Set());
      index++;
    } else if (char === '[') {
      open.push(null);
      index++;
    } else if (char === '}' || char === ']') {
      open.pop();
      index++;
    } else if (char === '"') {
      const end = endOfString(text, index);
      const keys = open[open.length - 1];
      if (keys && nextNonSpace(text, end) === ':') {
        const key = JSON.parse(text.slice(index, end));
        if (keys.has(key)) throw new SyntaxError(`duplicate key ${JSON.stringify(key)}`);
        keys.add(key);
      }
      index = end;
    } else {
      index++;
    }
  }
  return value;
}

function endOfString(text, start) {
  let index = start + 1;
  while (text[index] !== '"') index += text[index] === '\\' ? 2 : 1;
  return index + 1;
}

function nextNonSpace(text, index) {
  while (' \t\r\n'.includes(text[index]) && index < text.length) index++;
  return text[index];
}
