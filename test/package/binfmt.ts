/** Reads what tests need from Mach-O, PE and ELF files: format, architecture, load commands, the SEA fuse. */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** Node's SEA blob starts with this magic (src/node_sea.h, kMagic), little-endian. */
export const SEA_BLOB_MAGIC = 0x143da20;

export const LC_SEGMENT_64 = 0x19;
export const LC_CODE_SIGNATURE = 0x1d;
export const CPU_TYPE_X86_64 = 0x01000007;
export const CPU_TYPE_ARM64 = 0x0100000c;

export interface MachoSection {
  segment: string;
  name: string;
  offset: number;
  size: number;
}

export interface Macho {
  cputype: number;
  filetype: number;
  commands: number[];
  segments: string[];
  sections: MachoSection[];
}

function cstr(b: Buffer, at: number, len: number): string {
  const s = b.subarray(at, at + len);
  const z = s.indexOf(0);
  return s.subarray(0, z < 0 ? len : z).toString('latin1');
}

/** A thin 64-bit little-endian Mach-O file's header and load commands. */
export function parseMacho(b: Buffer): Macho {
  if (b.readUInt32LE(0) !== 0xfeedfacf) throw new Error(`not a 64-bit Mach-O file (magic 0x${b.readUInt32LE(0).toString(16)})`);
  const cputype = b.readUInt32LE(4);
  const filetype = b.readUInt32LE(12);
  const ncmds = b.readUInt32LE(16);
  const out: Macho = { cputype, filetype, commands: [], segments: [], sections: [] };
  let at = 32;
  for (let i = 0; i < ncmds; i++) {
    const cmd = b.readUInt32LE(at);
    const size = b.readUInt32LE(at + 4);
    out.commands.push(cmd);
    if (cmd === LC_SEGMENT_64) {
      const seg = cstr(b, at + 8, 16);
      out.segments.push(seg);
      const nsects = b.readUInt32LE(at + 64);
      for (let s = 0; s < nsects; s++) {
        const sa = at + 72 + s * 80;
        out.sections.push({ name: cstr(b, sa, 16), segment: cstr(b, sa + 16, 16), size: Number(b.readBigUInt64LE(sa + 40)), offset: b.readUInt32LE(sa + 48) });
      }
    }
    at += size;
  }
  return out;
}

/** 'pe' (MZ + PE\0\0, machine x64), 'elf' (x86-64) or 'macho'. */
export function formatOf(b: Buffer): string {
  if (b.readUInt16LE(0) === 0x5a4d) {
    const pe = b.readUInt32LE(0x3c);
    if (b.readUInt32LE(pe) === 0x4550 && b.readUInt16LE(pe + 4) === 0x8664) return 'pe-x64';
    return 'pe-other';
  }
  if (b.readUInt32BE(0) === 0x7f454c46) return b.readUInt16LE(18) === 62 ? 'elf-x64' : 'elf-other';
  if (b.readUInt32LE(0) === 0xfeedfacf) return 'macho';
  return 'unknown';
}

/** The fuse's state: postject turns `<fuse>:0` into `<fuse>:1` when it injects the blob. */
export function fuseState(b: Buffer): '0' | '1' | 'absent' {
  const at = b.indexOf(`${SEA_FUSE}:`, 0, 'latin1');
  if (at < 0) return 'absent';
  const c = String.fromCharCode(b[at + SEA_FUSE.length + 1]!);
  return c === '1' ? '1' : '0';
}
