;; XXH3-128 for inputs longer than 240 bytes (default secret, seed 0), streaming, with
;; WebAssembly SIMD128. Written from the public XXH3 specification (xxHash's
;; doc/xxhash_spec.md, "XXH3 Algorithm Description (for large inputs)"). Inputs of at most
;; 240 bytes take XXH3's short and mid-size paths, which src/xxh3/xxh3.ts leaves to
;; hash-wasm. Assembled by scripts/gen-xxh3-wasm.ts into src/xxh3/xxh3-wasm.gen.ts.
;;
;; Memory (one instance = one file's hash; every byte of state lives below INPUT, so a
;; copy of [0, 576) is a complete snapshot):
;;     0 ..  64  acc[8], the eight u64 accumulators
;;    64 .. 256  the default 192-byte secret
;;   256         i32: stripes done in the current 1024-byte block (0..15)
;;   260         i32: r, bytes at the end of HIST not consumed yet (0..64)
;;   272 .. 288  the digest, canonical (high64 then low64, each big-endian)
;;   512 .. 576  HIST: the last 64 bytes of the input so far
;;   576 ..      INPUT: the caller writes up to 261,056 new bytes here, then calls update(n)
;;
;; The invariant that makes streaming equal the one-shot algorithm: a stripe is consumed
;; only once at least one more byte follows it, so the (len - 1) / 64 full stripes are
;; accumulated (with a scramble after every 16th) and the final 1..64 bytes are left; the
;; digest then accumulates the last 64 bytes of the input (HIST) as the "last stripe".
(module
  (memory (export "memory") 4)
  (data (i32.const 64)
    "\b8\fe\6c\39\23\a4\4b\be\7c\01\81\2c\f7\21\ad\1c\de\d4\6d\e9\83\90\97\db\72\40\a4\a4\b7\b3\67\1f"
    "\cb\79\e6\4e\cc\c0\e5\78\82\5a\d0\7d\cc\ff\72\21\b8\08\46\74\f7\43\24\8e\e0\35\90\e6\81\3a\26\4c"
    "\3c\28\52\bb\91\c3\00\cb\88\d0\65\8b\1b\53\2e\a3\71\64\48\97\a2\0d\f9\4e\38\19\ef\46\a9\de\ac\d8"
    "\a8\fa\76\3f\e3\9c\34\3f\f9\dc\bb\c7\c7\0b\4f\1d\8a\51\e0\4b\cd\b4\59\31\c8\9f\7e\c9\d9\78\73\64"
    "\ea\c5\ac\83\34\d3\eb\c3\c5\81\a0\ff\fa\13\63\eb\17\0d\dd\51\b7\f0\da\49\d3\16\55\26\29\d4\68\9e"
    "\2b\16\be\58\7d\47\a1\fc\8f\f8\b8\d1\7a\d0\31\ce\45\cb\3a\8f\95\16\04\28\af\d7\fb\ca\bb\4b\40\7e")

  ;; Fresh state: the spec's initial accumulators, no stripe consumed.
  (func (export "init")
    (i64.store offset=0 (i32.const 0) (i64.const 0xC2B2AE3D))            ;; PRIME32_3
    (i64.store offset=8 (i32.const 0) (i64.const 0x9E3779B185EBCA87))    ;; PRIME64_1
    (i64.store offset=16 (i32.const 0) (i64.const 0xC2B2AE3D27D4EB4F))   ;; PRIME64_2
    (i64.store offset=24 (i32.const 0) (i64.const 0x165667B19E3779F9))   ;; PRIME64_3
    (i64.store offset=32 (i32.const 0) (i64.const 0x85EBCA77C2B2AE63))   ;; PRIME64_4
    (i64.store offset=40 (i32.const 0) (i64.const 0x85EBCA77))           ;; PRIME32_2
    (i64.store offset=48 (i32.const 0) (i64.const 0x27D4EB2F165667C5))   ;; PRIME64_5
    (i64.store offset=56 (i32.const 0) (i64.const 0x9E3779B1))           ;; PRIME32_1
    (i32.store (i32.const 256) (i32.const 0))
    (i32.store (i32.const 260) (i32.const 0)))

  ;; One accumulator pair (acc[2j], acc[2j+1]) and its 16 bytes of stripe `d` and secret `s`:
  ;; acc[i ^ 1] += d[i]; acc[i] += lo32(d[i] ^ s[i]) * hi32(d[i] ^ s[i]).
  (func $accPair (param $a v128) (param $d v128) (param $s v128) (result v128)
    (local $k v128)
    (local.set $k (v128.xor (local.get $d) (local.get $s)))
    (i64x2.add
      (i64x2.add (local.get $a)
        (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d) (local.get $d)))
      (i64x2.extmul_low_i32x4_u
        (i8x16.shuffle 0 1 2 3 8 9 10 11 0 1 2 3 8 9 10 11 (local.get $k) (local.get $k))
        (i8x16.shuffle 4 5 6 7 12 13 14 15 4 5 6 7 12 13 14 15 (local.get $k) (local.get $k)))))

  ;; Consume the n bytes just written at INPUT (after the r unconsumed bytes at the end of
  ;; HIST), leaving 1..64 bytes unconsumed, and keep the last 64 bytes in HIST. The caller
  ;; guarantees that HIST plus the new bytes hold at least 64 real bytes of input.
  ;;
  ;; The hot loop is $accPair for two pairs at once, arranged for V8's x64 code (shuffles
  ;; are the bound there; measured with test/bench/xxh3.ts): one lo/hi split of the 32-bit
  ;; halves of both pairs' keys feeds extmul_low for the first pair and extmul_high for the
  ;; second, and the scramble is written out (a call there made V8 spill the accumulators
  ;; on every stripe).
  (func (export "update") (param $n i32)
    (local $p i32) (local $end i32) (local $s i32) (local $sec i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $d v128) (local $e v128) (local $k v128) (local $f v128) (local $lo v128) (local $hi v128)
    (local.set $end (i32.add (i32.const 576) (local.get $n)))
    (local.set $p (i32.sub (i32.const 576) (i32.load (i32.const 260))))
    (local.set $s (i32.load (i32.const 256)))
    (local.set $a0 (v128.load offset=0 (i32.const 0)))
    (local.set $a1 (v128.load offset=16 (i32.const 0)))
    (local.set $a2 (v128.load offset=32 (i32.const 0)))
    (local.set $a3 (v128.load offset=48 (i32.const 0)))
    (block $done
      (loop $stripe
        (br_if $done (i32.le_u (i32.sub (local.get $end) (local.get $p)) (i32.const 64)))
        (local.set $sec (i32.add (i32.const 64) (i32.shl (local.get $s) (i32.const 3))))
        ;; pairs 0 and 1: stripe bytes 0..32
        (local.set $d (v128.load offset=0 (local.get $p)))
        (local.set $e (v128.load offset=16 (local.get $p)))
        (local.set $k (v128.xor (local.get $d) (v128.load offset=0 (local.get $sec))))
        (local.set $f (v128.xor (local.get $e) (v128.load offset=16 (local.get $sec))))
        (local.set $lo (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $k) (local.get $f)))
        (local.set $hi (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $k) (local.get $f)))
        (local.set $a0 (i64x2.add (i64x2.add (local.get $a0) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d) (local.get $d)))
          (i64x2.extmul_low_i32x4_u (local.get $lo) (local.get $hi))))
        (local.set $a1 (i64x2.add (i64x2.add (local.get $a1) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))
          (i64x2.extmul_high_i32x4_u (local.get $lo) (local.get $hi))))
        ;; pairs 2 and 3: stripe bytes 32..64
        (local.set $d (v128.load offset=32 (local.get $p)))
        (local.set $e (v128.load offset=48 (local.get $p)))
        (local.set $k (v128.xor (local.get $d) (v128.load offset=32 (local.get $sec))))
        (local.set $f (v128.xor (local.get $e) (v128.load offset=48 (local.get $sec))))
        (local.set $lo (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $k) (local.get $f)))
        (local.set $hi (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $k) (local.get $f)))
        (local.set $a2 (i64x2.add (i64x2.add (local.get $a2) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d) (local.get $d)))
          (i64x2.extmul_low_i32x4_u (local.get $lo) (local.get $hi))))
        (local.set $a3 (i64x2.add (i64x2.add (local.get $a3) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))
          (i64x2.extmul_high_i32x4_u (local.get $lo) (local.get $hi))))
        (local.set $p (i32.add (local.get $p) (i32.const 64)))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (if (i32.eq (local.get $s) (i32.const 16))
          (then
            ;; a whole block: scramble with the secret's last 64 bytes (memory 192..256)
            (local.set $s (i32.const 0))
            (local.set $a0 (i64x2.mul
              (v128.xor (v128.xor (local.get $a0) (i64x2.shr_u (local.get $a0) (i32.const 47))) (v128.load offset=192 (i32.const 0)))
              (i64x2.splat (i64.const 0x9E3779B1))))
            (local.set $a1 (i64x2.mul
              (v128.xor (v128.xor (local.get $a1) (i64x2.shr_u (local.get $a1) (i32.const 47))) (v128.load offset=208 (i32.const 0)))
              (i64x2.splat (i64.const 0x9E3779B1))))
            (local.set $a2 (i64x2.mul
              (v128.xor (v128.xor (local.get $a2) (i64x2.shr_u (local.get $a2) (i32.const 47))) (v128.load offset=224 (i32.const 0)))
              (i64x2.splat (i64.const 0x9E3779B1))))
            (local.set $a3 (i64x2.mul
              (v128.xor (v128.xor (local.get $a3) (i64x2.shr_u (local.get $a3) (i32.const 47))) (v128.load offset=240 (i32.const 0)))
              (i64x2.splat (i64.const 0x9E3779B1))))))
        (br $stripe)))
    (v128.store offset=0 (i32.const 0) (local.get $a0))
    (v128.store offset=16 (i32.const 0) (local.get $a1))
    (v128.store offset=32 (i32.const 0) (local.get $a2))
    (v128.store offset=48 (i32.const 0) (local.get $a3))
    (i32.store (i32.const 256) (local.get $s))
    (i32.store (i32.const 260) (i32.sub (local.get $end) (local.get $p)))
    (memory.copy (i32.const 512) (i32.sub (local.get $end) (i32.const 64)) (i32.const 64)))

  ;; The 64x64 -> 128-bit product of a and b, its two halves xored (from 32-bit halves).
  (func $mulFold (param $a i64) (param $b i64) (result i64)
    (local $ll i64) (local $hl i64) (local $lh i64) (local $cross i64)
    (local.set $ll (i64.mul (i64.and (local.get $a) (i64.const 0xFFFFFFFF)) (i64.and (local.get $b) (i64.const 0xFFFFFFFF))))
    (local.set $hl (i64.mul (i64.shr_u (local.get $a) (i64.const 32)) (i64.and (local.get $b) (i64.const 0xFFFFFFFF))))
    (local.set $lh (i64.mul (i64.and (local.get $a) (i64.const 0xFFFFFFFF)) (i64.shr_u (local.get $b) (i64.const 32))))
    (local.set $cross (i64.add (i64.add (i64.shr_u (local.get $ll) (i64.const 32))
      (i64.and (local.get $hl) (i64.const 0xFFFFFFFF))) (local.get $lh)))
    (i64.xor
      ;; low 64 bits
      (i64.or (i64.shl (local.get $cross) (i64.const 32)) (i64.and (local.get $ll) (i64.const 0xFFFFFFFF)))
      ;; high 64 bits
      (i64.add (i64.add (i64.shr_u (local.get $hl) (i64.const 32)) (i64.shr_u (local.get $cross) (i64.const 32)))
        (i64.mul (i64.shr_u (local.get $a) (i64.const 32)) (i64.shr_u (local.get $b) (i64.const 32))))))

  ;; One pair's contribution to a merge: mulFold(acc[2j] ^ s[0], acc[2j+1] ^ s[1]).
  (func $mixPair (param $a v128) (param $sec i32) (result i64)
    (local $x v128)
    (local.set $x (v128.xor (local.get $a) (v128.load (local.get $sec))))
    (call $mulFold (i64x2.extract_lane 0 (local.get $x)) (i64x2.extract_lane 1 (local.get $x))))

  ;; The spec's finalMerge over the accumulators at 0..64, with the secret from `sec`.
  (func $merge (param $init i64) (param $sec i32) (result i64)
    (local $h i64)
    (local.set $h (i64.add (i64.add (i64.add (i64.add (local.get $init)
      (call $mixPair (v128.load offset=0 (i32.const 0)) (local.get $sec)))
      (call $mixPair (v128.load offset=16 (i32.const 0)) (i32.add (local.get $sec) (i32.const 16))))
      (call $mixPair (v128.load offset=32 (i32.const 0)) (i32.add (local.get $sec) (i32.const 32))))
      (call $mixPair (v128.load offset=48 (i32.const 0)) (i32.add (local.get $sec) (i32.const 48)))))
    ;; avalanche
    (local.set $h (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 37))))
    (local.set $h (i64.mul (local.get $h) (i64.const 0x165667919E3779F9)))
    (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 32))))

  ;; The digest of the `len` bytes so far (len > 240), written canonically at 272. The state
  ;; is left as it was (the accumulators are put back), so hashing may go on.
  (func (export "digest") (param $lenF f64)
    (local $len i64) (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $lo i64) (local $hi i64)
    (local.set $len (i64.trunc_f64_u (local.get $lenF)))
    (local.set $a0 (v128.load offset=0 (i32.const 0)))
    (local.set $a1 (v128.load offset=16 (i32.const 0)))
    (local.set $a2 (v128.load offset=32 (i32.const 0)))
    (local.set $a3 (v128.load offset=48 (i32.const 0)))
    ;; the last stripe: the input's last 64 bytes, secret from offset 192 - 71 = 121
    (v128.store offset=0 (i32.const 0)
      (call $accPair (local.get $a0) (v128.load offset=512 (i32.const 0)) (v128.load offset=185 (i32.const 0))))
    (v128.store offset=16 (i32.const 0)
      (call $accPair (local.get $a1) (v128.load offset=528 (i32.const 0)) (v128.load offset=201 (i32.const 0))))
    (v128.store offset=32 (i32.const 0)
      (call $accPair (local.get $a2) (v128.load offset=544 (i32.const 0)) (v128.load offset=217 (i32.const 0))))
    (v128.store offset=48 (i32.const 0)
      (call $accPair (local.get $a3) (v128.load offset=560 (i32.const 0)) (v128.load offset=233 (i32.const 0))))
    ;; low64: secret offset 11, len * PRIME64_1; high64: offset 192 - 75 = 117, ~(len * PRIME64_2)
    (local.set $lo (call $merge (i64.mul (local.get $len) (i64.const 0x9E3779B185EBCA87)) (i32.const 75)))
    (local.set $hi (call $merge
      (i64.xor (i64.mul (local.get $len) (i64.const 0xC2B2AE3D27D4EB4F)) (i64.const -1)) (i32.const 181)))
    (v128.store offset=0 (i32.const 0) (local.get $a0))
    (v128.store offset=16 (i32.const 0) (local.get $a1))
    (v128.store offset=32 (i32.const 0) (local.get $a2))
    (v128.store offset=48 (i32.const 0) (local.get $a3))
    ;; [lo, hi] as little-endian bytes, reversed: hi big-endian, then lo big-endian
    (v128.store (i32.const 272)
      (i8x16.shuffle 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0
        (i64x2.replace_lane 1 (i64x2.splat (local.get $lo)) (local.get $hi))
        (i64x2.splat (local.get $lo))))))
