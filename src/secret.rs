//! Secret byte buffers: key material, DEKs and tokens live in [`SecretBytes`].
//!
//! A `SecretBytes` owns a page-aligned allocation that is `mlock`ed where the process is
//! permitted to (so it is never written to swap) and marked `MADV_DONTDUMP`, and it is
//! zeroed, unlocked and unmarked before the memory is returned. It has no `Debug`, `Clone`, `PartialEq` or
//! `Serialize`: a secret can only be read through [`SecretBytes::expose_secret`], at the
//! call that consumes it.

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroize;

const PAGE: usize = 4096;

/// Set once the first `mlock` fails (e.g. `RLIMIT_MEMLOCK` too small): secrets then stay
/// unlocked (no further mlock attempts), and the refusal is logged once, not per allocation.
static MLOCK_REFUSED: AtomicBool = AtomicBool::new(false);

pub struct SecretBytes {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    locked: bool,
}

// SAFETY: `SecretBytes` uniquely owns its allocation (no aliasing pointers are handed
// out except through `&self`/`&mut self` borrows), exactly like a `Box<[u8]>`.
unsafe impl Send for SecretBytes {}
// SAFETY: shared access only yields `&[u8]`, which is safe to read from many threads.
unsafe impl Sync for SecretBytes {}

impl SecretBytes {
    /// Copies `src` into a fresh locked buffer. The caller zeroizes its own copy.
    pub fn from_slice(src: &[u8]) -> Self {
        let mut out = Self::zeroed(src.len());
        out.as_mut_slice().copy_from_slice(src);
        out
    }

    /// `len` bytes from the operating system's CSPRNG.
    pub fn random(len: usize) -> Result<Self, getrandom::Error> {
        let mut out = Self::zeroed(len);
        getrandom::fill(out.as_mut_slice())?;
        Ok(out)
    }

    fn zeroed(len: usize) -> Self {
        let size = len.div_ceil(PAGE).max(1).saturating_mul(PAGE);
        let layout = match Layout::from_size_align(size, PAGE) {
            Ok(layout) => layout,
            Err(_) => handle_alloc_error(Layout::new::<u8>()),
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        let locked = lock_pages(ptr, size);
        Self {
            ptr,
            len,
            layout,
            locked,
        }
    }

    /// The secret bytes. Every caller says, in a comment at the call, why it needs them.
    pub fn expose_secret(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size() >= len` initialised (zeroed, then
        // written) bytes owned by `self` for the lifetime of the borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `expose_secret`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.as_mut_slice().zeroize();
        if self.locked {
            // SAFETY: the range is the one this value locked in `zeroed`.
            unsafe { libc::munlock(self.ptr.as_ptr().cast(), self.layout.size()) };
        }
        // The pages go back to the allocator as they came: still marked, they would stay split
        // off their mapping, and a process that keeps making secrets at new addresses would
        // run out of mappings (vm.max_map_count) and fail to allocate.
        // SAFETY: the range is the one `zeroed` marked; this only changes a paging attribute.
        unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.layout.size(), libc::MADV_DODUMP) };
        // SAFETY: `ptr` was allocated with exactly `layout` and is not used afterwards.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

fn lock_pages(ptr: NonNull<u8>, size: usize) -> bool {
    // SAFETY: `ptr..ptr+size` is a live allocation owned by the caller; madvise and mlock
    // only change paging attributes of those pages.
    unsafe {
        libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_DONTDUMP);
        if MLOCK_REFUSED.load(Ordering::Relaxed) {
            return false;
        }
        if libc::mlock(ptr.as_ptr().cast(), size) == 0 {
            true
        } else {
            if !MLOCK_REFUSED.swap(true, Ordering::Relaxed) {
                // The start has said what to do about a low limit (startup's memlock check).
                tracing::debug!(
                    "mlock refused (RLIMIT_MEMLOCK reached?): further unwrapped secrets may be written to swap"
                );
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_their_bytes_and_length() {
        let s = SecretBytes::from_slice(b"abc");
        assert_eq!(s.expose_secret(), b"abc");
        assert_eq!(s.len(), 3);
        let big = SecretBytes::from_slice(&[7u8; 5000]);
        assert_eq!(big.expose_secret(), &[7u8; 5000][..]);
    }

    /// Whether the mapping holding `addr` is excluded from core dumps (`dd` in its VmFlags);
    /// `None` when no mapping holds it.
    fn excluded_from_dumps(addr: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split(' ').next().and_then(|r| r.split_once('-'));
            if let Some((start, end)) = range
                && let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
            {
                inside = (start..end).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.split_whitespace().any(|f| f == "dd"));
            }
        }
        None
    }

    #[test]
    fn a_dropped_secret_gives_its_pages_back_as_it_found_them() {
        // Pages marked "do not dump" and never unmarked stay split off their mapping after the
        // allocator takes them back: every secret at a new address added mappings until the
        // process reached vm.max_map_count and could no longer map memory at all.
        let secret = SecretBytes::from_slice(&[7u8; 32]);
        let addr = secret.ptr.as_ptr() as usize;
        assert_eq!(excluded_from_dumps(addr), Some(true), "a live secret is not dumped");
        drop(secret);
        assert_ne!(
            excluded_from_dumps(addr),
            Some(true),
            "the page, back with the allocator"
        );
    }

    #[test]
    fn random_secrets_differ() {
        let a = SecretBytes::random(32).unwrap();
        let b = SecretBytes::random(32).unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(SecretBytes::random(0).unwrap().is_empty());
    }
}
