//! A line's bytes appended to a `Vec<u8>` through its spare capacity: the length lives in the
//! cursor and is stored into the Vec once, when the cursor is dropped. Each piece checks its
//! room (a compare and a branch; growing is a cold call): sound piece by piece, where one bound
//! reserved per line would have to be kept right by hand for every key. Short copies are made
//! with overlapping fixed-size loads and stores instead of a `memcpy` call, strings are checked
//! for characters to escape as they are copied (the same registers), and integers are written
//! straight into the room, four digits per division. `Vec::extend_from_slice` per piece (a capacity
//! check, a length update and a `memcpy` call each) and `itoa` (digits into its buffer, then
//! copied) were a third of the line writer.

use std::ptr;

/// `"00" "01" .. "99"`: two digits per table read.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The longest integer written: `-9223372036854775808` and `18446744073709551615` are 20.
const MAX_DIGITS: usize = 20;

/// Appends to `buf` (see the module's comment). Invariant: `buf[..len]` is initialized and
/// `len <= buf.capacity()`; `buf.len()` is stale until the cursor is dropped.
pub struct Cursor<'a> {
    buf: &'a mut Vec<u8>,
    len: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        let len = buf.len();
        Cursor { buf, len }
    }

    /// Where the next byte goes (an index into the Vec).
    #[inline(always)]
    pub fn pos(&self) -> usize {
        self.len
    }

    /// Overwrites the byte at `at`, already written.
    #[inline(always)]
    pub fn set(&mut self, at: usize, byte: u8) {
        if at < self.len {
            // SAFETY: `at < len <= capacity`: inside the allocation and initialized.
            unsafe { *self.buf.as_mut_ptr().add(at) = byte };
        }
    }

    /// At least `n` bytes of spare capacity after `len`.
    #[inline(always)]
    fn room(&mut self, n: usize) -> *mut u8 {
        if self.buf.capacity() - self.len < n {
            self.grow(n);
        }
        // SAFETY: `len <= capacity`: at most one past the end of the allocation.
        unsafe { self.buf.as_mut_ptr().add(self.len) }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        // SAFETY: `buf[..len]` is initialized (the invariant) and `len <= capacity`.
        unsafe { self.buf.set_len(self.len) };
        self.buf.reserve(n.max(1024));
    }

    /// Appends `s`.
    #[inline(always)]
    pub fn bytes(&mut self, s: &[u8]) {
        let at = self.room(s.len());
        // SAFETY: `room` made `s.len()` bytes of spare capacity at `at`, which `s` (a shared
        // borrow) cannot overlap since the cursor borrows the Vec mutably.
        unsafe { copy_short(at, s) };
        self.len += s.len();
    }

    #[inline(always)]
    pub fn byte(&mut self, c: u8) {
        let at = self.room(1);
        // SAFETY: one byte of room at `at`.
        unsafe { at.write(c) };
        self.len += 1;
    }

    /// `s` between quotes if nothing in it needs escaping (see [`special`]), and `true`; else
    /// nothing, and `false`. Strings under 32 bytes are loaded once, as two to four words
    /// (overlapping), checked and stored from the same registers.
    #[inline]
    pub fn plain_string(&mut self, s: &[u8]) -> bool {
        let n = s.len();
        let src = s.as_ptr();
        let at = self.room(n + 2);
        // SAFETY: in every arm, loads at offsets `0..k` and `n - k..n` with `k <= n` read inside
        // `s`; stores at `at + 1 + (same offsets)` write inside the `n + 2` bytes of room at
        // `at`, which `s` cannot overlap (the cursor borrows the Vec mutably).
        unsafe {
            match n {
                8..=16 => {
                    let a = src.cast::<u64>().read_unaligned();
                    let b = src.add(n - 8).cast::<u64>().read_unaligned();
                    if special2(a, b) {
                        return false;
                    }
                    at.add(1).cast::<u64>().write_unaligned(a);
                    at.add(1 + n - 8).cast::<u64>().write_unaligned(b);
                }
                17..=32 => {
                    let [a, b, c, d] =
                        [0, 8, n - 16, n - 8].map(|i| src.add(i).cast::<u64>().read_unaligned());
                    if special2(a, b) || special2(c, d) {
                        return false;
                    }
                    at.add(1).cast::<u64>().write_unaligned(a);
                    at.add(9).cast::<u64>().write_unaligned(b);
                    at.add(1 + n - 16).cast::<u64>().write_unaligned(c);
                    at.add(1 + n - 8).cast::<u64>().write_unaligned(d);
                }
                4..8 => {
                    let a = src.cast::<u32>().read_unaligned();
                    let b = src.add(n - 4).cast::<u32>().read_unaligned();
                    let ab = u64::from(a) | u64::from(b) << 32;
                    if special2(ab, ab) {
                        return false;
                    }
                    at.add(1).cast::<u32>().write_unaligned(a);
                    at.add(1 + n - 4).cast::<u32>().write_unaligned(b);
                }
                _ => {
                    if !s.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\') {
                        return false;
                    }
                    copy_short(at.add(1), s);
                }
            }
            at.write(b'"');
            at.add(1 + n).write(b'"');
        }
        self.len += n + 2;
        true
    }

    /// `n` in decimal, as `itoa` and serde_json write it.
    #[inline]
    pub fn uint(&mut self, n: u64) {
        let at = self.room(MAX_DIGITS);
        let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1);
        // SAFETY: `digits <= 20` bytes of room at `at`.
        unsafe { write_digits(at.add(digits), n) };
        self.len += digits;
    }

    #[inline]
    pub fn int(&mut self, n: i64) {
        if n < 0 {
            self.byte(b'-');
        }
        self.uint(n.unsigned_abs());
    }

    /// `n < 10^9` as nine digits, zero-padded (a timestamp's nanoseconds).
    #[inline]
    pub fn nine_digits(&mut self, n: u32) {
        let at = self.room(9);
        let n = u64::from(n % 1_000_000_000);
        // SAFETY: nine bytes of room at `at`; `write_digits` writes at most nine digits for a
        // number below 10^9, and the leading zeros fill the rest of the nine.
        unsafe {
            ptr::write_bytes(at, b'0', 9);
            write_digits(at.add(9), n);
        }
        self.len += 9;
    }

    /// Runs `f` on the Vec itself (the rare pieces written by serde or `fmt`), then goes on
    /// after what it appended.
    pub fn vec(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        // SAFETY: `buf[..len]` is initialized (the invariant) and `len <= capacity`.
        unsafe { self.buf.set_len(self.len) };
        f(self.buf);
        self.len = self.buf.len();
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        // SAFETY: `buf[..len]` is initialized and `len <= capacity` (the invariant).
        unsafe { self.buf.set_len(self.len) };
    }
}

/// Non-zero when a byte of `x` needs escaping in a JSON string: a control character (< 0x20),
/// a quote or a backslash. The "has a byte less than n" word trick, exact as a yes/no for any
/// word (lanes past the first hit may be wrong, not the answer).
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
pub fn special(x: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let less_than = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    less_than(x, 0x20) | less_than(x ^ (ONES * 0x22), 1) | less_than(x ^ (ONES * 0x5c), 1)
}

/// A byte of `a` or `b` needs escaping: with SSE2 (every x86-64 CPU has it), the 16 bytes
/// compared at once, about a third of the instructions of the word trick on two words.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn special2(a: u64, b: u64) -> bool {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline (enabled in every x86_64 build): these
    // register-only intrinsics run on any CPU this binary can run on.
    unsafe {
        let x = _mm_set_epi64x(b as i64, a as i64);
        // Unsigned x <= 0x1f: the minimum of x and 0x1f is x.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x22));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x5c));
        _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash))) != 0
    }
}

/// A byte of `a` or `b` needs escaping.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn special2(a: u64, b: u64) -> bool {
    special(a) | special(b) != 0
}

/// Copies `s` to `dst`. Names, numbers' keys and most strings are under 32 bytes: those are
/// copied with two overlapping loads and stores of a fixed size (the first and the last bytes),
/// without a call; longer ones with `memcpy`.
///
/// # Safety
/// `dst` is valid for `s.len()` bytes of writes and does not overlap `s`.
#[inline(always)]
unsafe fn copy_short(dst: *mut u8, s: &[u8]) {
    let n = s.len();
    let src = s.as_ptr();
    // SAFETY: in every arm, each load reads inside `s` (offsets `0..k` and `n - k..n` with
    // `k <= n`), each store writes inside `dst[..n]`, which the caller gave us.
    unsafe {
        match n {
            16..=32 => {
                let a = src.cast::<[u8; 16]>().read_unaligned();
                let b = src.add(n - 16).cast::<[u8; 16]>().read_unaligned();
                dst.cast::<[u8; 16]>().write_unaligned(a);
                dst.add(n - 16).cast::<[u8; 16]>().write_unaligned(b);
            }
            8..16 => {
                let a = src.cast::<u64>().read_unaligned();
                let b = src.add(n - 8).cast::<u64>().read_unaligned();
                dst.cast::<u64>().write_unaligned(a);
                dst.add(n - 8).cast::<u64>().write_unaligned(b);
            }
            4..8 => {
                let a = src.cast::<u32>().read_unaligned();
                let b = src.add(n - 4).cast::<u32>().read_unaligned();
                dst.cast::<u32>().write_unaligned(a);
                dst.add(n - 4).cast::<u32>().write_unaligned(b);
            }
            1..4 => {
                // First, middle and last byte: all of 1, 2 or 3.
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            0 => {}
            _ => ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

/// Writes `n`'s digits backwards, ending just before `end`: four at a time (one division by
/// 10^4, the remainder split into two table pairs), then two, then the last one.
///
/// # Safety
/// The `digits(n)` bytes before `end` are valid for writes.
#[inline(always)]
unsafe fn write_digits(mut end: *mut u8, mut n: u64) {
    let pair = |r: u64| PAIRS.as_ptr().wrapping_add(2 * r as usize);
    // SAFETY: one store per digit of `n`, from the last backwards, so at most `digits(n)`
    // bytes before `end`; every pair read is at `2 * r <= 198` in the 200-byte table (r < 100).
    unsafe {
        while n >= 10_000 {
            let r = n % 10_000;
            n /= 10_000;
            end = end.sub(4);
            ptr::copy_nonoverlapping(pair(r / 100), end, 2);
            ptr::copy_nonoverlapping(pair(r % 100), end.add(2), 2);
        }
        if n >= 100 {
            end = end.sub(2);
            ptr::copy_nonoverlapping(pair(n % 100), end, 2);
            n /= 100;
        }
        if n >= 10 {
            ptr::copy_nonoverlapping(pair(n), end.sub(2), 2);
        } else {
            *end.sub(1) = b'0' + n as u8;
        }
    }
}

/// The integer types of the records, written through `uint` or `int`.
pub trait Integer: Copy {
    fn write(self, b: &mut Cursor<'_>);
}

macro_rules! integers {
    ($method:ident, $wide:ty: $($t:ty),*) => {$(
        impl Integer for $t {
            #[inline(always)]
            fn write(self, b: &mut Cursor<'_>) {
                b.$method(<$wide>::from(self));
            }
        }
    )*};
}

integers!(uint, u64: u8, u16, u32, u64);
integers!(int, i64: i8, i16, i32, i64);
