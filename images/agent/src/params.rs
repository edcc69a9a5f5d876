//! Numbers that define what the operations do, beyond the kernel ABI in `vfio/abi.rs`: where
//! channel programs live in the DMA buffer, how long the agent waits for things. Pure
//! constants with no dependencies: the C reproducer exporter (harness/src/repro_c) compiles
//! this file into the harness and writes the same values into the C it generates, so a
//! standalone reproducer does exactly what the agent does.

/// IOVA of a handle's DMA buffer (docs/DESIGN.md, 'Channel I/O through the I/O region'). Below 2 GiB, as format-1 CCW data addresses are
/// 31-bit, and below 16 MiB so format-0 CCWs can address it too.
pub const DMA_IOVA: u64 = 0x10_0000;
pub const DMA_LEN: usize = 1 << 20;
/// Where the channel program and the data it reads sit inside the buffer.
pub const DMA_CCW_OFF: usize = 0;
pub const DMA_DATA_OFF: usize = 0x100;
/// The page size userfaultfd works in (s390x has 4 KiB pages only).
pub const PAGE: usize = 4096;
/// A page no ordinary I/O touches, for `io_stall`: it is dropped and handed to a
/// userfaultfd, so it must never have been pinned for the device.
pub const DMA_STALL_OFF: usize = 0x8_0000;

/// An IOVA nothing is mapped at (the buffer is 1 MiB at 1 MiB), for `bad_input`.
pub const BAD_UNMAPPED_IOVA: u32 = 0x7f00_0000;

/// How often the consumer's watcher re-checks whether its handle was closed.
pub const WATCH_TICK_MS: u64 = 200;
