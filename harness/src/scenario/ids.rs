//! The spellings of the identifiers a scenario writes: bus ids as Linux prints them, UUIDs as
//! mdev `create` takes them, and the names a scenario makes up for mdevs, handles and actors.

/// A device number as QEMU's `devno=` takes it: `<cssid>.<ssid>.<devno>`, `fe.0.0002`.
pub fn check_devno(s: &str) -> Result<(), String> {
    check_bus_id(s).map_err(|why| format!("bad devno {s:?} ({why}); write it like \"fe.0.0002\""))
}

/// A subchannel id as sysfs names it: `0.0.0000`.
pub fn check_schid(s: &str) -> Result<(), String> {
    check_bus_id(s)
        .map_err(|why| format!("bad subchannel id {s:?} ({why}); write it like \"0.0.0000\""))
}

/// `cssid.ssid.number`: the one grammar of bus ids, shared with QEMU's devnos
/// ([`crate::vm::Devno`]).
pub fn check_bus_id(s: &str) -> Result<(), &'static str> {
    parse_bus_id(s).map(|_| ())
}

/// `cssid.ssid.number` -> its three numbers: cssid 0..ff, ssid 0..3, number exactly four
/// lower-case hex digits (the kernel prints them so, and sysfs names are compared as strings).
pub fn parse_bus_id(s: &str) -> Result<(u8, u8, u16), &'static str> {
    let parts: Vec<&str> = s.split('.').collect();
    let [css, ssid, num] = parts.as_slice() else {
        return Err("three dot-separated parts expected");
    };
    let hex = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    if !hex(css) || css.len() > 2 {
        return Err("the channel subsystem id is one or two lower-case hex digits");
    }
    if !matches!(*ssid, "0" | "1" | "2" | "3") {
        return Err("the subchannel set id is 0..3");
    }
    if !hex(num) || num.len() != 4 {
        return Err("the number is four lower-case hex digits");
    }
    let bad = "not a number";
    Ok((
        u8::from_str_radix(css, 16).map_err(|_| bad)?,
        ssid.parse().map_err(|_| bad)?,
        u16::from_str_radix(num, 16).map_err(|_| bad)?,
    ))
}

/// An mdev UUID: 8-4-4-4-12 hex digits.
pub fn check_uuid(s: &str) -> Result<(), String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let ok = lens == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad UUID {s:?}; write it like \"8c4b1e9a-0000-4000-8000-000000000001\""
        ))
    }
}

/// Names the scenario makes up (actors, mdevs, handles, barriers, device ids): they appear in
/// thread names, file names and reports, so keep them to word characters.
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(format!(
            "bad {what} name {s:?}: use 1-64 letters, digits, '_' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids() {
        let table = [
            ("fe.0.0002", true),
            ("0.0.0000", true),
            ("0.3.ffff", true),
            ("fe.0.2", false),
            ("fe.4.0002", false),
            ("FE.0.0002", false),
            ("fe.0.00002", false),
            ("fe.0", false),
            ("100.0.0000", false),
            ("", false),
        ];
        for (s, ok) in table {
            assert_eq!(check_devno(s).is_ok(), ok, "{s}");
        }
    }

    #[test]
    fn uuids_and_names() {
        assert!(check_uuid("8c4b1e9a-0000-4000-8000-000000000001").is_ok());
        assert!(check_uuid("8c4b1e9a-0000-4000-8000-00000000001").is_err());
        assert!(check_uuid("xc4b1e9a-0000-4000-8000-000000000001").is_err());
        assert!(check_name("handle", "d1").is_ok());
        assert!(check_name("handle", "d 1").is_err());
        assert!(check_name("handle", "").is_err());
    }
}
