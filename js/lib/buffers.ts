// Decoding of tensor traits (docs/protocol.md, section 1). The encoder is lenswidget/encode.py;
// this is the only decoder. Bytes are little-endian, row-major (C order).

export type DType = "f16" | "f32" | "u8";

export interface TensorMeta {
  dtype: DType;
  shape: number[];
  /** u8 only: value = offset + scale * byte. */
  scale?: number;
  offset?: number;
}

export interface Tensor {
  data: Float32Array;
  shape: number[];
}

export type Bytes = DataView | ArrayBuffer | Uint8Array;

const BYTES: Record<DType, number> = { f16: 2, f32: 4, u8: 1 };

/** Number of elements of a shape ([] is a scalar: 1). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The bytes of a trait value (a DataView, ArrayBuffer or typed array: no copy), or null for anything else. */
export function asBytes(view: unknown): Uint8Array | null {
  if (!view) return null;
  if (view instanceof Uint8Array) return view;
  if (view instanceof ArrayBuffer) return new Uint8Array(view);
  if (ArrayBuffer.isView(view)) return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  return null;
}

/** A typed-array-aligned copy only when the bytes are not aligned for `align`-byte elements. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

const SUBNORMAL = 2 ** -24; // value of the least significant bit of a float16 subnormal

/** One IEEE-754 binary16 bit pattern to a number. */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * SUBNORMAL;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * float16 bit patterns to float32, by bit manipulation (exact: every float16 is a float32).
 * Normal numbers re-bias the exponent (15 -> 127) and shift the mantissa; subnormals are
 * computed as mant * 2^-24; Inf/NaN keep their class.
 */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = (h & 0x8000) << 16;
    const exp = h & 0x7c00;
    const mant = h & 0x03ff;
    if (exp === 0x7c00) {
      bits[i] = sign | 0x7f800000 | (mant << 13);
    } else if (exp !== 0) {
      bits[i] = (sign | (((exp >> 10) + 112) << 23) | (mant << 13)) >>> 0;
    } else if (mant !== 0) {
      out[i] = (sign ? -mant : mant) * SUBNORMAL;
    } else {
      bits[i] = sign >>> 0; // +0 or -0
    }
  }
  return out;
}

/**
 * Decode a tensor trait into float32 values.
 *
 * Returns `{data, shape}` with `data.length === numel(shape)`. f32 data that is already aligned is
 * returned as a view on the same memory (no copy); do not write to it. Throws an Error naming the
 * expected and actual byte counts when the bytes do not match the meta.
 */
export function decodeTensor(view: Bytes, meta: TensorMeta): Tensor {
  if (!meta || !(meta.dtype in BYTES)) {
    throw new Error(`decodeTensor: unknown dtype ${JSON.stringify(meta?.dtype)} (expected f16, f32 or u8)`);
  }
  const shape = Array.isArray(meta.shape) ? meta.shape.map(Number) : [];
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`decodeTensor: bad shape ${JSON.stringify(meta.shape)}`);
  }
  const n = numel(shape);
  const bytes = asBytes(view);
  if (!bytes) throw new TypeError("decodeTensor: expected a DataView, ArrayBuffer or Uint8Array");
  const expected = n * BYTES[meta.dtype];
  if (bytes.byteLength !== expected) {
    throw new Error(
      `decodeTensor: ${meta.dtype} ${JSON.stringify(shape)} needs ${expected} bytes, got ${bytes.byteLength}`,
    );
  }
  let data: Float32Array;
  if (meta.dtype === "f32") {
    const b = aligned(bytes, 4);
    data = new Float32Array(b.buffer, b.byteOffset, n);
  } else if (meta.dtype === "f16") {
    const b = aligned(bytes, 2);
    data = f16ToF32(new Uint16Array(b.buffer, b.byteOffset, n));
  } else {
    const scale = typeof meta.scale === "number" ? meta.scale : 1;
    const offset = typeof meta.offset === "number" ? meta.offset : 0;
    data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = offset + scale * bytes[i];
  }
  return { data, shape };
}

/** True when a trait holds bytes and a meta worth decoding (not the empty initial state). */
export function hasTensor(view: unknown, meta: unknown): view is Bytes {
  if (!view || !meta || typeof meta !== "object") return false;
  const len = (view as { byteLength?: number }).byteLength;
  return typeof len === "number" && len > 0 && "dtype" in (meta as object);
}
