//! The vfio, vfio-ccw and iommufd user ABI: request numbers and struct layouts, in one place.
//! Source: include/uapi/linux/{vfio.h,vfio_ccw.h,iommufd.h} of Linux 6.12. s390x is
//! big-endian; region contents are built with explicit big-endian conversions so the layout
//! is visible here rather than hidden in native-endian casts.

/// `_IO(';', nr)`: vfio and iommufd requests carry no size/direction bits.
const fn io(nr: u64) -> u64 {
    (0x3B << 8) | nr
}

pub const VFIO_API_VERSION: i32 = 0;
pub const VFIO_TYPE1V2_IOMMU: u64 = 3;

pub const VFIO_GET_API_VERSION: u64 = io(100);
pub const VFIO_CHECK_EXTENSION: u64 = io(101);
pub const VFIO_SET_IOMMU: u64 = io(102);
pub const VFIO_GROUP_GET_STATUS: u64 = io(103);
pub const VFIO_GROUP_SET_CONTAINER: u64 = io(104);
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = io(106);
pub const VFIO_DEVICE_GET_INFO: u64 = io(107);
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = io(108);
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = io(109);
pub const VFIO_DEVICE_SET_IRQS: u64 = io(110);
pub const VFIO_DEVICE_RESET: u64 = io(111);
pub const VFIO_IOMMU_MAP_DMA: u64 = io(113);
pub const VFIO_IOMMU_UNMAP_DMA: u64 = io(114);
pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = io(118);
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = io(119);
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u64 = io(120);

pub const IOMMU_DESTROY: u64 = io(0x80);

pub const IOMMU_IOAS_ALLOC: u64 = io(0x81);
pub const IOMMU_IOAS_MAP: u64 = io(0x85);
pub const IOMMU_IOAS_UNMAP: u64 = io(0x86);

pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;

pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
pub const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub const VFIO_IRQ_SET_ACTION_MASK: u32 = 1 << 3;
pub const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

pub const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;
pub const VFIO_REGION_INFO_CAP_TYPE: u16 = 2;
pub const VFIO_REGION_TYPE_CCW: u32 = 2;
pub const VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD: u32 = 1;
pub const VFIO_REGION_SUBTYPE_CCW_SCHIB: u32 = 2;
pub const VFIO_REGION_SUBTYPE_CCW_CRW: u32 = 3;

/// Fixed region index of the I/O region (VFIO_CCW_CONFIG_REGION_INDEX).
pub const VFIO_CCW_CONFIG_REGION_INDEX: u32 = 0;
pub const VFIO_CCW_IO_IRQ_INDEX: u32 = 0;
pub const VFIO_CCW_CRW_IRQ_INDEX: u32 = 1;
pub const VFIO_CCW_REQ_IRQ_INDEX: u32 = 2;

pub const VFIO_CCW_ASYNC_CMD_HSCH: u32 = 1 << 0;
pub const VFIO_CCW_ASYNC_CMD_CSCH: u32 = 1 << 1;

#[repr(C)]
#[derive(Default)]
pub struct GroupStatus {
    pub argsz: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Default)]
pub struct DeviceInfo {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
    pub cap_offset: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct RegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

/// `vfio_region_info` followed by room for its capability chain (one `cap_type` is 16 bytes).
#[repr(C)]
pub struct RegionInfoWithCaps {
    pub info: RegionInfo,
    pub caps: [u8; 224],
}

#[repr(C)]
#[derive(Default)]
pub struct IrqInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

/// `vfio_irq_set` carrying one eventfd (`-1` tears the trigger down).
#[repr(C)]
pub struct IrqSetEventfd {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
    pub fd: i32,
}

#[repr(C)]
pub struct DmaMap {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap` without the dirty-bitmap tail (no flags are used).
#[repr(C)]
pub struct DmaUnmap {
    pub argsz: u32,
    pub flags: u32,
    pub iova: u64,
    pub size: u64,
}

#[repr(C)]
pub struct BindIommufd {
    pub argsz: u32,
    pub flags: u32,
    pub iommufd: i32,
    pub out_devid: u32,
}

#[repr(C)]
pub struct AttachIommufdPt {
    pub argsz: u32,
    pub flags: u32,
    pub pt_id: u32,
}

#[repr(C)]
pub struct DetachIommufdPt {
    pub argsz: u32,
    pub flags: u32,
}

#[repr(C)]
pub struct IommuDestroy {
    pub size: u32,
    pub id: u32,
}

#[repr(C)]
pub struct IoasAlloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

#[repr(C)]
pub struct IoasMap {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

#[repr(C)]
pub struct IoasUnmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

// ---- vfio_ccw.h regions ----------------------------------------------------------------------

/// `struct ccw_io_region`: orb[12] scsw[12] irb[96] ret_code(u32), packed: 124 bytes.
pub const IO_REGION_SIZE: usize = 12 + 12 + 96 + 4;
pub const IO_REGION_ORB: usize = 0;
pub const IO_REGION_SCSW: usize = 12;
pub const IO_REGION_IRB: usize = 24;
pub const IO_REGION_RET_CODE: usize = 120;

/// `struct ccw_cmd_region`: command(u32) ret_code(u32).
pub const CMD_REGION_SIZE: usize = 8;

// ---- channel-subsystem formats (Principles of Operation) ---------------------------------------
// Bit numbers below count from the least significant bit of the 32-bit word.

/// ORB word 1: suspend control (S).
pub const ORB1_SUSPEND_CTL: u32 = 1 << 27;
/// ORB word 1: format-1 CCWs (F).
pub const ORB1_FORMAT1: u32 = 1 << 23;
/// ORB word 1: prefetch allowed (P).
pub const ORB1_PREFETCH: u32 = 1 << 22;
/// SCSW word 0: function control START.
pub const SCSW0_FCTL_START: u32 = 0x4 << 12;

pub const CCW_CMD_SENSE_ID: u8 = 0xE4;
pub const CCW_FLAG_SLI: u8 = 0x20;
pub const CCW_FLAG_SUSPEND: u8 = 0x02;

/// A format-1 CCW: cmd, flags, count(16), data address(32).
pub fn ccw1(cmd: u8, flags: u8, count: u16, cda: u32) -> [u8; 8] {
    let c = count.to_be_bytes();
    let a = cda.to_be_bytes();
    [cmd, flags, c[0], c[1], a[0], a[1], a[2], a[3]]
}

/// A format-0 CCW: cmd, data address(24), flags, reserved, count(16).
pub fn ccw0(cmd: u8, flags: u8, count: u16, cda: u32) -> [u8; 8] {
    let c = count.to_be_bytes();
    let a = cda.to_be_bytes();
    [cmd, a[1], a[2], a[3], flags, 0, c[0], c[1]]
}

/// The 140-byte I/O region contents for a START: ORB (intparm, word 1, cpa) and SCSW word 0.
pub fn io_region_start(orb_word1: u32, cpa: u32) -> [u8; IO_REGION_SIZE] {
    io_region(orb_word1, cpa, SCSW0_FCTL_START)
}

/// The I/O region contents for the function `scsw0` names (START, or one the driver refuses).
pub fn io_region(orb_word1: u32, cpa: u32, scsw0: u32) -> [u8; IO_REGION_SIZE] {
    let mut r = [0u8; IO_REGION_SIZE];
    // intparm: any value; the driver replaces it with its own.
    r[IO_REGION_ORB..IO_REGION_ORB + 4].copy_from_slice(&0xCC00_0001u32.to_be_bytes());
    r[IO_REGION_ORB + 4..IO_REGION_ORB + 8].copy_from_slice(&orb_word1.to_be_bytes());
    r[IO_REGION_ORB + 8..IO_REGION_ORB + 12].copy_from_slice(&cpa.to_be_bytes());
    r[IO_REGION_SCSW..IO_REGION_SCSW + 4].copy_from_slice(&scsw0.to_be_bytes());
    r
}

// ---- userfaultfd.h (io_stall holds the kernel's CCW fetch in a missing page) ----------------

pub const UFFD_API: u64 = 0xaa;
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
/// `struct uffd_msg` is 32 bytes: event u8 at 0; for a page fault, flags u64 at 8 and the
/// address u64 at 16.
pub const UFFD_MSG_SIZE: usize = 32;
pub const UFFD_MSG_ADDRESS: usize = 16;

/// _IOWR(0xAA, nr, size).
const fn uffd_iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (0xaa << 8) | nr
}

#[repr(C)]
pub struct UffdioApi {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

#[repr(C)]
pub struct UffdioRange {
    pub start: u64,
    pub len: u64,
}

#[repr(C)]
pub struct UffdioRegister {
    pub range: UffdioRange,
    pub mode: u64,
    pub ioctls: u64,
}

#[repr(C)]
pub struct UffdioCopy {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    pub copy: i64,
}

pub const UFFDIO_API: u64 = uffd_iowr(0x3f, std::mem::size_of::<UffdioApi>());
pub const UFFDIO_REGISTER: u64 = uffd_iowr(0x00, std::mem::size_of::<UffdioRegister>());
pub const UFFDIO_COPY: u64 = uffd_iowr(0x03, std::mem::size_of::<UffdioCopy>());

pub fn be32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_uapi() {
        assert_eq!(VFIO_GET_API_VERSION, 0x3B64);
        assert_eq!(VFIO_DEVICE_RESET, 0x3B6F);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD, 0x3B76);
        assert_eq!(IOMMU_IOAS_MAP, 0x3B85);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3B72);
        assert_eq!(IOMMU_IOAS_UNMAP, 0x3B86);
    }

    #[test]
    fn struct_sizes_match_the_uapi() {
        assert_eq!(std::mem::size_of::<RegionInfo>(), 32);
        assert_eq!(std::mem::size_of::<IrqSetEventfd>(), 24);
        assert_eq!(std::mem::size_of::<DmaMap>(), 32);
        assert_eq!(std::mem::size_of::<IoasMap>(), 40);
        assert_eq!(std::mem::size_of::<DmaUnmap>(), 24);
        assert_eq!(std::mem::size_of::<IoasUnmap>(), 24);
        assert_eq!(std::mem::size_of::<BindIommufd>(), 16);
        assert_eq!(std::mem::size_of::<DetachIommufdPt>(), 8);
        assert_eq!(std::mem::size_of::<IommuDestroy>(), 8);
        assert_eq!(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3B78);
        assert_eq!(IOMMU_DESTROY, 0x3B80);
        assert_eq!(IO_REGION_SIZE, 124);
    }

    #[test]
    fn sense_id_ccw_is_e4_20_0008() {
        assert_eq!(
            ccw1(CCW_CMD_SENSE_ID, CCW_FLAG_SLI, 8, 0x100100),
            [0xE4, 0x20, 0, 8, 0, 0x10, 0x01, 0]
        );
        let r = io_region_start(ORB1_FORMAT1 | ORB1_PREFETCH, 0x100000);
        assert_eq!(be32(&r, 4), 0x00C0_0000);
        assert_eq!(be32(&r, 12), 0x4000);
    }
}
