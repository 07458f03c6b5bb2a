// SHA-256 in plain JavaScript, for the proof of work (antibot/proof_of_work.py has the rule).
//
// Not crypto.subtle: it is async (one promise per hash costs more than the hash) and exists
// only on secure origins, while a shop may well be opened over plain HTTP on a LAN.
// The challenge prefix is hashed once ("midstate"); each attempt hashes only the last block
// or two, so a solver does about a million attempts a second.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL_STATE = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const encoder = new TextEncoder();

function compress(state, bytes, offset, w) {
  for (let i = 0; i < 16; i++) {
    const j = offset + i * 4;
    w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15];
    const y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0], b = state[1], c = state[2], d = state[3];
  let e = state[4], f = state[5], g = state[6], h = state[7];
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0;
    d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  state[0] += a; state[1] += b; state[2] += c; state[3] += d;
  state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

/** Hashes of `prefix + suffix` for one fixed prefix and many short suffixes. */
export class PrefixedSha256 {
  constructor(prefixBytes) {
    const fullBlocks = Math.floor(prefixBytes.length / 64);
    this.midstate = new Int32Array(INITIAL_STATE);
    this.w = new Int32Array(64);
    for (let block = 0; block < fullBlocks; block++) compress(this.midstate, prefixBytes, block * 64, this.w);
    this.tail = prefixBytes.subarray(fullBlocks * 64);
    this.prefixLength = prefixBytes.length;
    this.buffer = new Uint8Array(128);
    this.state = new Int32Array(8);
  }

  /** The digest as eight signed 32-bit words (big-endian words of the 32 bytes). */
  digestWords(suffixBytes) {
    const { buffer, tail } = this;
    const used = tail.length + suffixBytes.length;
    if (used + 9 > buffer.length) throw new RangeError("suffix too long for PrefixedSha256");
    const blocks = used + 9 <= 64 ? 1 : 2;
    buffer.fill(0, 0, blocks * 64);
    buffer.set(tail, 0);
    buffer.set(suffixBytes, tail.length);
    buffer[used] = 0x80;
    const bits = (this.prefixLength + suffixBytes.length) * 8;
    const end = blocks * 64;
    // Lengths here stay far below 2**32 bits, so the high word of the 64-bit length is 0.
    buffer[end - 4] = bits >>> 24;
    buffer[end - 3] = bits >>> 16;
    buffer[end - 2] = bits >>> 8;
    buffer[end - 1] = bits;
    this.state.set(this.midstate);
    for (let block = 0; block < blocks; block++) compress(this.state, buffer, block * 64, this.w);
    return this.state;
  }
}

export function leadingZeroBits(words) {
  let zeros = 0;
  for (const word of words) {
    if (word === 0) {
      zeros += 32;
      continue;
    }
    return zeros + Math.clz32(word);
  }
  return zeros;
}

export function sha256Hex(text) {
  const bytes = encoder.encode(text);
  // Whole blocks go through the midstate, the rest is the suffix.
  const cut = bytes.length - (bytes.length % 64);
  return hex(new PrefixedSha256(bytes.subarray(0, cut)).digestWords(bytes.subarray(cut)));
}

function hex(words) {
  return Array.from(words, (word) => (word >>> 0).toString(16).padStart(8, "0")).join("");
}

/**
 * The first decimal counter from `start` whose `sha256(challenge + counter)` has at least
 * `difficulty` leading zero bits (the same search as proof_of_work.solve in Python).
 */
export function solve(challenge, difficulty, start = 0) {
  const hasher = new PrefixedSha256(encoder.encode(challenge));
  for (let counter = start; ; counter++) {
    const candidate = String(counter);
    if (leadingZeroBits(hasher.digestWords(encoder.encode(candidate))) >= difficulty) return candidate;
  }
}
