//! Byte layouts of encoded channel programs, checked against the architecture's formats.
use super::*;

const IOVA: u64 = 0x10_0000;
const LEN: u64 = 1 << 20;

fn prog(json: &str) -> ChannelProgram {
    serde_json::from_str(json).unwrap()
}

#[test]
fn sense_id_with_sli_is_e4_20_0008_at_the_data_area() {
    let p = prog(r#"{"ccws":[{"cmd":"sense_id","flags":["sli"],"count":8,"data":{"buf":0}}]}"#);
    assert_eq!(p.problem(), None);
    let e = p.encode(IOVA, LEN);
    assert_eq!(
        e.image,
        [0xe4, 0x20, 0x00, 0x08, 0x00, 0x11, 0x00, 0x00],
        "data at IOVA + DATA_OFF = 0x110000"
    );
    assert_eq!(e.cpa, 0x10_1000);
    assert_eq!(e.orb_word1, (1 << 23) | (1 << 22), "format 1, prefetch");
    assert_eq!(e.scsw0, 0x4000, "start function");
}

#[test]
fn orb_options_set_their_bits() {
    let p = prog(
        r#"{"orb":{"format0":true,"prefetch":false,"c64":true,"i2k":true,"suspend":true,
             "transport":true,"key":9,"lpm":128},"function":"halt","ccws":[{"cmd":"nop"}]}"#,
    );
    let e = p.encode(IOVA, LEN);
    assert_eq!(
        e.orb_word1,
        (9 << 28) | (1 << 27) | (1 << 18) | (1 << 17) | (1 << 16) | (0x80 << 8)
    );
    assert_eq!(e.scsw0, 0x2000);
}

#[test]
fn format0_ccw_puts_the_address_before_the_flags() {
    let p = prog(
        r#"{"orb":{"format0":true},"ccws":[{"cmd":"sense","flags":["cc"],"count":32,"data":{"buf":16}},{"cmd":"nop"}]}"#,
    );
    let e = p.encode(IOVA, LEN);
    assert_eq!(
        &e.image[..8],
        &[0x04, 0x11, 0x00, 0x10, 0x40, 0x00, 0x00, 0x20]
    );
    assert_eq!(&e.image[8..], &[0x03, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn tic_points_at_its_target_ccw() {
    let p = prog(
        r#"{"ccws":[{"cmd":"nop","flags":["cc"]},{"cmd":"tic","data":{"ccw":3}},{"cmd":"nop"},{"cmd":"nop"}]}"#,
    );
    assert_eq!(p.problem(), None);
    let e = p.encode(IOVA, LEN);
    assert_eq!(&e.image[8..16], &[0x08, 0, 0, 0, 0x00, 0x10, 0x10, 0x18]);
}

#[test]
fn a_tic_that_points_back_or_nowhere_is_refused() {
    for to in [0, 1, 2] {
        let p = prog(&format!(
            r#"{{"ccws":[{{"cmd":"nop","flags":["cc"]}},{{"cmd":"tic","data":{{"ccw":{to}}}}}]}}"#
        ));
        let why = p.problem().expect("refused");
        assert!(
            why.starts_with("ccws[1]: a TIC must point forward"),
            "{why}"
        );
    }
    let p = prog(r#"{"ccws":[{"cmd":"tic","data":{"buf":0}}]}"#);
    assert!(p.problem().unwrap().contains("a TIC needs data"));
    let p = prog(r#"{"ccws":[{"cmd":"nop","data":{"ccw":0}}]}"#);
    assert!(p.problem().unwrap().contains("only a TIC"));
}

#[test]
fn format2_idal_has_one_4k_idaw_per_page_touched() {
    // 5000 bytes from 0x800 into the data area touch 2 pages with 4K IDAWs.
    let p = prog(
        r#"{"orb":{"c64":true},"ccws":[{"cmd":"sense_id","count":5000,"data":{"idal":{"off":2048}}}]}"#,
    );
    assert_eq!(p.problem(), None);
    let e = p.encode(IOVA, LEN);
    let idal_at = (IOVA as u32 + IDAL_OFF).to_be_bytes();
    assert_eq!(
        &e.image[..8],
        &[0xe4, 0x04, 0x13, 0x88, idal_at[0], idal_at[1], idal_at[2], idal_at[3]]
    );
    let idal = &e.image[(IDAL_OFF - CCW_OFF) as usize..];
    assert_eq!(idal.len(), 16);
    assert_eq!(u64::from_be_bytes(idal[..8].try_into().unwrap()), 0x11_0800);
    assert_eq!(u64::from_be_bytes(idal[8..].try_into().unwrap()), 0x11_1000);
}

#[test]
fn format1_idal_is_31_bit_2k_blocks_and_scatter_skips_a_block() {
    let p = prog(
        r#"{"ccws":[{"cmd":"sense_id","count":4096,"data":{"idal":{"off":0,"scatter":true}}}]}"#,
    );
    let e = p.encode(IOVA, LEN);
    let idal = &e.image[(IDAL_OFF - CCW_OFF) as usize..];
    let words: Vec<u32> = idal
        .chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(
        words,
        [0x11_0000, 0x11_1000],
        "2 blocks of 2K, every other one"
    );
}

#[test]
fn unmapped_is_just_past_the_buffer() {
    let p = prog(r#"{"ccws":[{"cmd":"read","count":8,"data":"unmapped"}]}"#);
    let e = p.encode(IOVA, LEN);
    assert_eq!(&e.image[4..8], &0x20_0000u32.to_be_bytes());
}

#[test]
fn limits_are_named() {
    let p = ChannelProgram {
        orb: Orb::default(),
        function: IoFunction::Start,
        ccws: vec![],
    };
    assert!(p.problem().unwrap().contains("at least one CCW"));
    let nop = Ccw {
        cmd: CcwCmd::Nop,
        flags: vec![CcwFlag::Cc],
        count: 0,
        data: DataRef::None,
    };
    let p = ChannelProgram {
        ccws: vec![nop.clone(); MAX_CCWS + 1],
        ..p
    };
    assert!(p.problem().unwrap().contains("at most 320"));
    let p = prog(r#"{"ccws":[{"cmd":"read","count":65535,"data":{"buf":393000}}]}"#);
    assert!(p.problem().unwrap().contains("runs past the data area"));
    let p = prog(r#"{"orb":{"key":16},"ccws":[{"cmd":"nop"}]}"#);
    assert!(p.problem().unwrap().contains("4-bit key"));
}

#[test]
fn default_fields_are_left_out_when_serialized() {
    let p = prog(r#"{"ccws":[{"cmd":"nop"}]}"#);
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"ccws":[{"cmd":"nop","count":0}]}"#
    );
}
