// jsdom has no object URLs and no 2-D canvas: stand-ins that keep the views' code paths alive.
let next = 0;
URL.createObjectURL = () => `blob:test/${next++}`;
URL.revokeObjectURL = () => {};
HTMLCanvasElement.prototype.getContext = () => null;
