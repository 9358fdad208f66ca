use super::plan::*;

#[test]
fn parses_a_full_plan() {
    let p =
        parse("1:blk@0x2000000/33=virtio-blk0; 1:rng@0x2000200/34=virtio-rng 0:net@0x1000=loop")
            .unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].kind, Kind::Block);
    assert_eq!(
        p[0].backing,
        Backing::Virtio {
            kind: Kind::Block,
            index: 0
        }
    );
    assert_eq!(p[1].irq, 34);
    assert_eq!(p[2].backing, Backing::Loopback);
}

#[test]
fn rejects_bad_plans() {
    for bad in [
        "1:blk@0x2000000/33",
        "1:disk@0x2000000/33=virtio-blk0",
        "1:blk@0x2000010/33=virtio-blk0",
        "1:blk@0x2000000/3=virtio-blk0",
        "1:blk@0x2000000/33=virtio-net0",
        "1:rng@0x2000000/33=ram:4",
        "1:blk@0x2000000/33=ram:0",
        "1:blk@0x2000000/33=virtio-blk0 1:blk@0x2000100/34=ram:1",
        "1:blk@0x2000000/33=virtio-blk0 1:rng@0x2000200/33=virtio-rng0",
        "1:blk@0x2000000/33=virtio-blk0 2:blk@0x2000000/33=virtio-blk0",
        "70000:blk@0x2000000/33=ram:1",
    ] {
        assert!(parse(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn same_window_in_two_guests_is_fine() {
    assert!(parse("1:blk@0x2000000/33=ram:1 2:blk@0x2000000/33=ram:1").is_ok());
}
