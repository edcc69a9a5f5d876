//! The DMA buffer a handle's channel programs live in: anonymous memory mapped for the device
//! at a fixed IOVA, through the type1 container or the iommufd IOAS.

use std::os::fd::RawFd;

use super::abi::*;
use crate::sys::{self, SysError, SysResult};

pub use crate::params::{
    DMA_CCW_OFF as CCW_OFF, DMA_DATA_OFF as DATA_OFF, DMA_IOVA as IOVA, DMA_LEN as LEN,
    DMA_STALL_OFF as STALL_OFF,
};

pub struct Dma {
    ptr: *mut u8,
    pub len: usize,
    pub iova: u64,
}

// SAFETY: the mapping is plain anonymous memory owned by this struct; all access goes through
// volatile copies (the device side writes it behind our back anyway).
unsafe impl Send for Dma {}
unsafe impl Sync for Dma {}

impl Dma {
    fn alloc() -> SysResult<Dma> {
        // SAFETY: anonymous private mapping, no fd.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(SysError::last("mmap DMA buffer"));
        }
        Ok(Dma {
            ptr: p.cast(),
            len: LEN,
            iova: IOVA,
        })
    }

    /// VFIO_IOMMU_MAP_DMA on a type1 container.
    pub fn map_container(container: RawFd) -> SysResult<Dma> {
        let d = Dma::alloc()?;
        d.map(container, None)?;
        Ok(d)
    }

    /// IOMMU_IOAS_MAP at a fixed IOVA on an iommufd IOAS.
    pub fn map_ioas(iommufd: RawFd, ioas_id: u32) -> SysResult<Dma> {
        let d = Dma::alloc()?;
        d.map(iommufd, Some(ioas_id))?;
        Ok(d)
    }

    /// Maps this buffer at its IOVA: on the type1 container `fd`, or on `fd`'s IOAS `ioas`.
    pub fn map(&self, fd: RawFd, ioas: Option<u32>) -> SysResult<()> {
        match ioas {
            None => {
                let mut m = DmaMap {
                    argsz: std::mem::size_of::<DmaMap>() as u32,
                    flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                    vaddr: self.ptr as u64,
                    iova: self.iova,
                    size: self.len as u64,
                };
                sys::ioctl_ptr(fd, VFIO_IOMMU_MAP_DMA, &mut m, "VFIO_IOMMU_MAP_DMA")?;
            }
            Some(ioas_id) => {
                let mut m = IoasMap {
                    size: std::mem::size_of::<IoasMap>() as u32,
                    flags: IOMMU_IOAS_MAP_FIXED_IOVA
                        | IOMMU_IOAS_MAP_READABLE
                        | IOMMU_IOAS_MAP_WRITEABLE,
                    ioas_id,
                    reserved: 0,
                    user_va: self.ptr as u64,
                    length: self.len as u64,
                    iova: self.iova,
                };
                sys::ioctl_ptr(fd, IOMMU_IOAS_MAP, &mut m, "IOMMU_IOAS_MAP")?;
            }
        }
        Ok(())
    }

    /// Unmaps this buffer's IOVA range (see [`Dma::map`]); returns how many bytes the kernel
    /// says it unmapped (0 when nothing was mapped there).
    pub fn unmap(&self, fd: RawFd, ioas: Option<u32>) -> SysResult<u64> {
        match ioas {
            None => {
                let mut u = DmaUnmap {
                    argsz: std::mem::size_of::<DmaUnmap>() as u32,
                    flags: 0,
                    iova: self.iova,
                    size: self.len as u64,
                };
                sys::ioctl_ptr(fd, VFIO_IOMMU_UNMAP_DMA, &mut u, "VFIO_IOMMU_UNMAP_DMA")?;
                Ok(u.size)
            }
            Some(ioas_id) => {
                let mut u = IoasUnmap {
                    size: std::mem::size_of::<IoasUnmap>() as u32,
                    ioas_id,
                    iova: self.iova,
                    length: self.len as u64,
                };
                sys::ioctl_ptr(fd, IOMMU_IOAS_UNMAP, &mut u, "IOMMU_IOAS_UNMAP")?;
                Ok(u.length)
            }
        }
    }

    /// The user address of `off`, for registering it with a userfaultfd.
    pub fn user_addr(&self, off: usize) -> u64 {
        self.ptr as u64 + off.min(self.len) as u64
    }

    /// Drops the page at `off` (MADV_DONTNEED): its next access is a missing-page fault.
    pub fn drop_page(&self, off: usize, page: usize) -> SysResult<()> {
        if off % page != 0 || off + page > self.len {
            return Err(SysError::new(
                format!("drop page at {off:#x}"),
                libc::EINVAL,
            ));
        }
        // SAFETY: a whole page inside the live mapping; its contents are not needed.
        let r = unsafe { libc::madvise(self.ptr.add(off).cast(), page, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(SysError::last("madvise(MADV_DONTNEED) stall page"));
        }
        Ok(())
    }

    pub fn write(&self, off: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            if off + i < self.len {
                // SAFETY: in bounds of the live mapping.
                unsafe { self.ptr.add(off + i).write_volatile(*b) };
            }
        }
    }

    pub fn read(&self, off: usize, n: usize) -> Vec<u8> {
        (off..(off + n).min(self.len))
            // SAFETY: in bounds of the live mapping.
            .map(|i| unsafe { self.ptr.add(i).read_volatile() })
            .collect()
    }
}

impl Drop for Dma {
    fn drop(&mut self) {
        // The handle drops this only after its container/iommufd is gone, so the kernel has
        // already unmapped and unpinned the pages.
        // SAFETY: ptr/len are the mapping made in alloc().
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
