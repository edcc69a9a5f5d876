//! The C side of the vfio ABI, generated from the agent's own definitions: the agent's
//! `vfio/abi.rs` (request numbers, flags, region layouts) and `params.rs` (DMA layout, waits)
//! are compiled into the harness here, so the C reproducer and the agent cannot disagree.
//! The struct layouts are listed as data below; their sizes are checked against the agent's
//! Rust structs (unit test) and, with a C compiler, against the kernel's uapi headers.

#[allow(dead_code)]
#[path = "../../../images/agent/src/vfio/abi.rs"]
mod agent_abi;
#[allow(dead_code)]
#[path = "../../../images/agent/src/params.rs"]
mod agent_params;

use std::fmt::Write;

/// Where the agent maps a handle's DMA buffer, for laying out channel programs.
pub(super) const DMA_IOVA: u64 = agent_params::DMA_IOVA;
pub(super) const DMA_LEN: u64 = agent_params::DMA_LEN as u64;

/// One `#define`: the C name, its value, and (for a kernel uapi fact) the C expression the
/// kernel's headers give for it, for the compile-time check.
#[derive(Debug, Clone, Copy)]
pub struct Constant {
    pub name: &'static str,
    pub value: u64,
    pub uapi: Option<&'static str>,
}

macro_rules! uapi {
    ($($c:ident $(= $cname:literal)?),* $(,)?) => {
        &[$(Constant {
            name: uapi!(@name $c $(, $cname)?),
            value: agent_abi::$c as u64,
            uapi: Some(uapi!(@name $c $(, $cname)?)),
        }),*]
    };
    (@name $c:ident) => { stringify!($c) };
    (@name $c:ident, $cname:literal) => { $cname };
}

/// The kernel's request numbers and flags; the C name is the uapi header's.
const UAPI: &[Constant] = uapi![
    VFIO_API_VERSION,
    VFIO_TYPE1V2_IOMMU = "VFIO_TYPE1v2_IOMMU",
    VFIO_GET_API_VERSION,
    VFIO_CHECK_EXTENSION,
    VFIO_SET_IOMMU,
    VFIO_GROUP_GET_STATUS,
    VFIO_GROUP_SET_CONTAINER,
    VFIO_GROUP_GET_DEVICE_FD,
    VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_REGION_INFO,
    VFIO_DEVICE_GET_IRQ_INFO,
    VFIO_DEVICE_SET_IRQS,
    VFIO_DEVICE_RESET,
    VFIO_IOMMU_MAP_DMA,
    VFIO_IOMMU_UNMAP_DMA,
    VFIO_DEVICE_BIND_IOMMUFD,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    VFIO_DEVICE_DETACH_IOMMUFD_PT,
    IOMMU_DESTROY,
    IOMMU_IOAS_ALLOC,
    IOMMU_IOAS_MAP,
    IOMMU_IOAS_UNMAP,
    VFIO_GROUP_FLAGS_VIABLE,
    VFIO_IRQ_SET_DATA_NONE,
    VFIO_IRQ_SET_DATA_BOOL,
    VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_ACTION_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_DMA_MAP_FLAG_READ,
    VFIO_DMA_MAP_FLAG_WRITE,
    IOMMU_IOAS_MAP_FIXED_IOVA,
    IOMMU_IOAS_MAP_WRITEABLE,
    IOMMU_IOAS_MAP_READABLE,
    VFIO_REGION_INFO_FLAG_CAPS,
    VFIO_REGION_INFO_CAP_TYPE,
    VFIO_REGION_TYPE_CCW,
    VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD,
    VFIO_REGION_SUBTYPE_CCW_SCHIB,
    VFIO_REGION_SUBTYPE_CCW_CRW,
    VFIO_CCW_CONFIG_REGION_INDEX,
    VFIO_CCW_IO_IRQ_INDEX,
    VFIO_CCW_CRW_IRQ_INDEX,
    VFIO_CCW_REQ_IRQ_INDEX,
    VFIO_CCW_ASYNC_CMD_HSCH,
    VFIO_CCW_ASYNC_CMD_CSCH,
    UFFD_API,
    UFFDIO_REGISTER_MODE_MISSING,
    UFFD_EVENT_PAGEFAULT,
    UFFDIO_API,
    UFFDIO_REGISTER,
    UFFDIO_COPY,
];

fn layout() -> Vec<Constant> {
    let c = |name, value: u64, uapi| Constant { name, value, uapi };
    use agent_abi as a;
    use agent_params as p;
    vec![
        c(
            "IO_REGION_SIZE",
            a::IO_REGION_SIZE as u64,
            Some("sizeof(struct ccw_io_region)"),
        ),
        c(
            "IO_REGION_ORB",
            a::IO_REGION_ORB as u64,
            Some("offsetof(struct ccw_io_region, orb_area)"),
        ),
        c(
            "IO_REGION_SCSW",
            a::IO_REGION_SCSW as u64,
            Some("offsetof(struct ccw_io_region, scsw_area)"),
        ),
        c(
            "IO_REGION_IRB",
            a::IO_REGION_IRB as u64,
            Some("offsetof(struct ccw_io_region, irb_area)"),
        ),
        c(
            "IO_REGION_RET_CODE",
            a::IO_REGION_RET_CODE as u64,
            Some("offsetof(struct ccw_io_region, ret_code)"),
        ),
        c(
            "CMD_REGION_SIZE",
            a::CMD_REGION_SIZE as u64,
            Some("sizeof(struct ccw_cmd_region)"),
        ),
        c(
            "VFIO_REGION_INFO_WITH_CAPS_SIZE",
            std::mem::size_of::<a::RegionInfoWithCaps>() as u64,
            None,
        ),
        c(
            "UFFD_MSG_SIZE",
            a::UFFD_MSG_SIZE as u64,
            Some("sizeof(struct uffd_msg)"),
        ),
        c(
            "UFFD_MSG_ADDRESS",
            a::UFFD_MSG_ADDRESS as u64,
            Some("offsetof(struct uffd_msg, arg.pagefault.address)"),
        ),
        c("ORB1_SUSPEND_CTL", a::ORB1_SUSPEND_CTL as u64, None),
        c("ORB1_FORMAT1", a::ORB1_FORMAT1 as u64, None),
        c("ORB1_PREFETCH", a::ORB1_PREFETCH as u64, None),
        c("SCSW0_FCTL_START", a::SCSW0_FCTL_START as u64, None),
        c("CCW_CMD_SENSE_ID", a::CCW_CMD_SENSE_ID as u64, None),
        c("CCW_FLAG_SLI", a::CCW_FLAG_SLI as u64, None),
        c("CCW_FLAG_SUSPEND", a::CCW_FLAG_SUSPEND as u64, None),
        c("DMA_IOVA", p::DMA_IOVA, None),
        c("DMA_LEN", p::DMA_LEN as u64, None),
        c("DMA_CCW_OFF", p::DMA_CCW_OFF as u64, None),
        c("DMA_DATA_OFF", p::DMA_DATA_OFF as u64, None),
        c("DMA_STALL_OFF", p::DMA_STALL_OFF as u64, None),
        c("PROG_CCW_OFF", ccwrig_proto::chanprog::CCW_OFF as u64, None),
        c("STALL_PAGE", p::PAGE as u64, None),
        c("BAD_UNMAPPED_IOVA", p::BAD_UNMAPPED_IOVA as u64, None),
        c("WATCH_TICK_MS", p::WATCH_TICK_MS, None),
    ]
}

/// Every constant the generated C defines, in the order it defines them.
pub fn constants() -> Vec<Constant> {
    let mut v = UAPI.to_vec();
    v.extend(layout());
    v
}

/// A C struct the reproducer declares itself (it does not include the kernel's headers, so it
/// builds against any libc and any installed kernel headers).
#[derive(Debug, Clone, Copy)]
pub struct CStruct {
    pub name: &'static str,
    /// (C type, field name); the types are fixed-width, naturally aligned.
    pub fields: &'static [(&'static str, &'static str)],
    /// The size of the agent's Rust struct for it.
    pub rust_size: usize,
    /// Whether the kernel's uapi headers declare it under the same name.
    pub in_uapi: bool,
}

const U32: &str = "uint32_t";
const U64: &str = "uint64_t";
const I32: &str = "int32_t";
const I64: &str = "int64_t";

fn width(t: &str) -> usize {
    if t == U64 || t == I64 {
        8
    } else {
        4
    }
}

pub fn structs() -> Vec<CStruct> {
    use agent_abi as a;
    use std::mem::size_of;
    let s = |name, fields, rust_size, in_uapi| CStruct {
        name,
        fields,
        rust_size,
        in_uapi,
    };
    vec![
        s(
            "vfio_group_status",
            &[(U32, "argsz"), (U32, "flags")],
            size_of::<a::GroupStatus>(),
            true,
        ),
        s(
            "vfio_device_info",
            &[
                (U32, "argsz"),
                (U32, "flags"),
                (U32, "num_regions"),
                (U32, "num_irqs"),
                (U32, "cap_offset"),
                (U32, "pad"),
            ],
            size_of::<a::DeviceInfo>(),
            true,
        ),
        s(
            "vfio_region_info",
            &[
                (U32, "argsz"),
                (U32, "flags"),
                (U32, "index"),
                (U32, "cap_offset"),
                (U64, "size"),
                (U64, "offset"),
            ],
            size_of::<a::RegionInfo>(),
            true,
        ),
        s(
            "vfio_irq_info",
            &[
                (U32, "argsz"),
                (U32, "flags"),
                (U32, "index"),
                (U32, "count"),
            ],
            size_of::<a::IrqInfo>(),
            true,
        ),
        // The kernel's vfio_irq_set ends in a flexible array; this is it with one eventfd.
        s(
            "vfio_irq_set_eventfd",
            &[
                (U32, "argsz"),
                (U32, "flags"),
                (U32, "index"),
                (U32, "start"),
                (U32, "count"),
                (I32, "fd"),
            ],
            size_of::<a::IrqSetEventfd>(),
            false,
        ),
        s(
            "vfio_iommu_type1_dma_map",
            &[
                (U32, "argsz"),
                (U32, "flags"),
                (U64, "vaddr"),
                (U64, "iova"),
                (U64, "size"),
            ],
            size_of::<a::DmaMap>(),
            true,
        ),
        // The kernel's ends in the dirty bitmap's flexible array, unused here.
        s(
            "vfio_iommu_type1_dma_unmap",
            &[(U32, "argsz"), (U32, "flags"), (U64, "iova"), (U64, "size")],
            size_of::<a::DmaUnmap>(),
            true,
        ),
        s(
            "vfio_device_bind_iommufd",
            &[
                (U32, "argsz"),
                (U32, "flags"),
                (I32, "iommufd"),
                (U32, "out_devid"),
            ],
            size_of::<a::BindIommufd>(),
            true,
        ),
        s(
            "vfio_device_attach_iommufd_pt",
            &[(U32, "argsz"), (U32, "flags"), (U32, "pt_id")],
            size_of::<a::AttachIommufdPt>(),
            true,
        ),
        s(
            "vfio_device_detach_iommufd_pt",
            &[(U32, "argsz"), (U32, "flags")],
            size_of::<a::DetachIommufdPt>(),
            true,
        ),
        s(
            "iommu_destroy",
            &[(U32, "size"), (U32, "id")],
            size_of::<a::IommuDestroy>(),
            true,
        ),
        s(
            "iommu_ioas_alloc",
            &[(U32, "size"), (U32, "flags"), (U32, "out_ioas_id")],
            size_of::<a::IoasAlloc>(),
            true,
        ),
        s(
            "iommu_ioas_map",
            &[
                (U32, "size"),
                (U32, "flags"),
                (U32, "ioas_id"),
                (U32, "__reserved"),
                (U64, "user_va"),
                (U64, "length"),
                (U64, "iova"),
            ],
            size_of::<a::IoasMap>(),
            true,
        ),
        s(
            "iommu_ioas_unmap",
            &[
                (U32, "size"),
                (U32, "ioas_id"),
                (U64, "iova"),
                (U64, "length"),
            ],
            size_of::<a::IoasUnmap>(),
            true,
        ),
        s(
            "uffdio_api",
            &[(U64, "api"), (U64, "features"), (U64, "ioctls")],
            size_of::<a::UffdioApi>(),
            true,
        ),
        // The kernel nests `struct uffdio_range range`; flat here, same layout (its size is
        // in UFFDIO_REGISTER's request number, which is checked).
        s(
            "uffdio_register_flat",
            &[(U64, "start"), (U64, "len"), (U64, "mode"), (U64, "ioctls")],
            size_of::<a::UffdioRegister>(),
            false,
        ),
        s(
            "uffdio_copy",
            &[
                (U64, "dst"),
                (U64, "src"),
                (U64, "len"),
                (U64, "mode"),
                (I64, "copy"),
            ],
            size_of::<a::UffdioCopy>(),
            true,
        ),
    ]
}

/// The size a C compiler gives a struct of naturally aligned fixed-width fields.
pub fn c_size(s: &CStruct) -> usize {
    let mut off = 0usize;
    let mut align = 1usize;
    for (t, _) in s.fields {
        let w = width(t);
        off = off.div_ceil(w) * w + w;
        align = align.max(w);
    }
    off.div_ceil(align) * align
}

/// The generated C section: every constant and struct, with where they come from.
pub fn c_section() -> String {
    let mut o = String::new();
    o.push_str(
        "/* ====================================================================================\n \
         * The vfio / vfio-ccw / iommufd user ABI, generated by ccwrig from the definitions its\n \
         * guest agent uses (images/agent/src/vfio/abi.rs, images/agent/src/params.rs), which\n \
         * follow include/uapi/linux/{vfio.h,vfio_ccw.h,iommufd.h}. Declared here rather than\n \
         * included, so the file builds against any installed kernel headers.\n \
         * ==================================================================================== */\n\n",
    );
    for c in constants() {
        let _ = writeln!(o, "#define {:<36} {:#x}", c.name, c.value);
    }
    o.push('\n');
    for s in structs() {
        let _ = writeln!(o, "struct {} {{", s.name);
        for (t, f) in s.fields {
            let _ = writeln!(o, "\t{t} {f};");
        }
        o.push_str("};\n");
        let _ = writeln!(
            o,
            "_Static_assert(sizeof(struct {}) == {}, \"layout of struct {}\");\n",
            s.name, s.rust_size, s.name
        );
    }
    o
}

/// A C file that checks every uapi fact above against the kernel's own headers (compile it
/// with `-I <kernel>/include/uapi`): it fails to compile on any difference.
pub fn uapi_check_source() -> String {
    // What `make headers_install` would substitute in the raw uapi headers.
    let mut o = String::from(
        "#define __user\n#define __packed __attribute__((packed))\n\
         #include <stddef.h>\n#include <stdint.h>\n#include <linux/types.h>\n\
         #include <linux/vfio.h>\n#include <linux/vfio_ccw.h>\n#include <linux/iommufd.h>\n\
         #include <linux/userfaultfd.h>\n\n",
    );
    for c in constants() {
        if let Some(e) = c.uapi {
            let _ = writeln!(
                o,
                "_Static_assert(({e}) == {:#x}, \"{} differs from the kernel's\");",
                c.value, c.name
            );
        }
    }
    for s in structs().iter().filter(|s| s.in_uapi) {
        let _ = writeln!(
            o,
            "_Static_assert(sizeof(struct {}) == {}, \"struct {} differs from the kernel's\");",
            s.name, s.rust_size, s.name
        );
        let mut off = 0usize;
        for (t, f) in s.fields {
            let w = width(t);
            off = off.div_ceil(w) * w;
            let _ = writeln!(
                o,
                "_Static_assert(offsetof(struct {}, {f}) == {off}, \"{}.{f}\");",
                s.name, s.name
            );
            off += w;
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C text defines exactly the agent's values (read back from the generated text, not
    /// from the table that produced it).
    #[test]
    fn c_defines_equal_the_agents_constants() {
        let text = c_section();
        let defined: std::collections::BTreeMap<&str, u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next().unwrap();
                let v = it.next().unwrap();
                (
                    name,
                    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap(),
                )
            })
            .collect();
        let want: &[(&str, u64)] = &[
            ("VFIO_DEVICE_RESET", agent_abi::VFIO_DEVICE_RESET),
            ("VFIO_GET_API_VERSION", agent_abi::VFIO_GET_API_VERSION),
            (
                "VFIO_GROUP_GET_DEVICE_FD",
                agent_abi::VFIO_GROUP_GET_DEVICE_FD,
            ),
            ("VFIO_DEVICE_SET_IRQS", agent_abi::VFIO_DEVICE_SET_IRQS),
            (
                "VFIO_DEVICE_BIND_IOMMUFD",
                agent_abi::VFIO_DEVICE_BIND_IOMMUFD,
            ),
            ("IOMMU_IOAS_MAP", agent_abi::IOMMU_IOAS_MAP),
            ("IOMMU_IOAS_UNMAP", agent_abi::IOMMU_IOAS_UNMAP),
            ("VFIO_IOMMU_UNMAP_DMA", agent_abi::VFIO_IOMMU_UNMAP_DMA),
            ("VFIO_TYPE1v2_IOMMU", agent_abi::VFIO_TYPE1V2_IOMMU),
            (
                "VFIO_CCW_REQ_IRQ_INDEX",
                agent_abi::VFIO_CCW_REQ_IRQ_INDEX as u64,
            ),
            ("IO_REGION_SIZE", agent_abi::IO_REGION_SIZE as u64),
            ("IO_REGION_IRB", agent_abi::IO_REGION_IRB as u64),
            ("ORB1_FORMAT1", agent_abi::ORB1_FORMAT1 as u64),
            ("CCW_CMD_SENSE_ID", agent_abi::CCW_CMD_SENSE_ID as u64),
            ("DMA_IOVA", agent_params::DMA_IOVA),
            ("DMA_DATA_OFF", agent_params::DMA_DATA_OFF as u64),
            ("WATCH_TICK_MS", agent_params::WATCH_TICK_MS),
        ];
        for (name, v) in want {
            assert_eq!(defined.get(name), Some(v), "{name}");
        }
        // And the values are the uapi's (the numbers from include/uapi/linux/vfio.h).
        assert_eq!(defined["VFIO_DEVICE_RESET"], 0x3b6f);
        assert_eq!(defined["VFIO_DEVICE_GET_REGION_INFO"], 0x3b6c);
        assert_eq!(defined["IOMMU_IOAS_ALLOC"], 0x3b81);
        assert_eq!(defined.len(), constants().len(), "a name defined twice");
    }

    #[test]
    fn the_agents_sense_id_is_the_channel_program_encoders() {
        // Two writers of CCWs and ORBs (the agent's default SENSE ID, the proto's encoder for
        // scenario programs) must agree on the bits.
        let p: ccwrig_proto::ChannelProgram = serde_json::from_str(
            r#"{"orb":{"suspend":true},"ccws":[{"cmd":"sense_id","flags":["sli","suspend"],"count":8,"data":{"buf":0}}]}"#,
        )
        .unwrap();
        let e = p.encode(DMA_IOVA, DMA_LEN);
        let cda = (DMA_IOVA + u64::from(ccwrig_proto::chanprog::DATA_OFF)) as u32;
        let flags = agent_abi::CCW_FLAG_SLI | agent_abi::CCW_FLAG_SUSPEND;
        assert_eq!(
            e.image,
            agent_abi::ccw1(agent_abi::CCW_CMD_SENSE_ID, flags, 8, cda)
        );
        assert_eq!(
            e.orb_word1,
            agent_abi::ORB1_FORMAT1 | agent_abi::ORB1_PREFETCH | agent_abi::ORB1_SUSPEND_CTL
        );
        assert_eq!(e.scsw0, agent_abi::SCSW0_FCTL_START);
        // The program area lies inside the buffer and clear of io_stall's page.
        let end = ccwrig_proto::chanprog::DATA_OFF + ccwrig_proto::chanprog::DATA_LEN;
        assert!(end as usize <= agent_params::DMA_STALL_OFF);
        assert!((ccwrig_proto::chanprog::CCW_OFF as usize) >= agent_params::DMA_DATA_OFF + 8);
    }

    #[test]
    fn c_struct_layouts_have_the_rust_sizes() {
        for s in structs() {
            assert_eq!(c_size(&s), s.rust_size, "struct {}", s.name);
        }
        assert_eq!(
            std::mem::size_of::<agent_abi::RegionInfoWithCaps>(),
            256,
            "room for the capability chain"
        );
    }
}
