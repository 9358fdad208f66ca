//! The real `virtio-drivers` frontend drives our device models.

mod common;

use backplane::backends::mem::{MemConsole, MemDisk, MemEntropy, MemNet};
use backplane::devices::{blk::Block, console::Console, net::Net, rng::Rng};
use common::{Dev, TestHal, TestTransport, device, poll};
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::{DeviceStatus, Transport};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn blk(disk: &MemDisk) -> (Dev, VirtIOBlk<TestHal, TestTransport>) {
    let dev = device(Block::new(Box::new(disk.clone())));
    let drv = VirtIOBlk::<TestHal, _>::new(TestTransport::new(&dev)).unwrap();
    (dev, drv)
}

#[test]
fn blk_read_write_flush_get_id() {
    let disk = MemDisk::new(64).with_id(b"disk-under-test");
    let (dev, mut drv) = blk(&disk);
    assert_eq!(drv.capacity(), 64);
    assert!(!drv.readonly());

    let data = pattern(SECTOR_SIZE * 3, 7);
    drv.write_blocks(5, &data).unwrap();
    assert_eq!(&disk.contents()[5 * 512..8 * 512], &data[..]);

    let mut back = vec![0u8; SECTOR_SIZE * 3];
    drv.read_blocks(5, &mut back).unwrap();
    assert_eq!(back, data);

    drv.flush().unwrap();
    assert!(disk.flushes() >= 1);

    let mut id = [0u8; 20];
    let n = drv.device_id(&mut id).unwrap();
    assert_eq!(&id[..n], b"disk-under-test");
    assert!(!dev.borrow().needs_reset());
    assert!(dev.borrow().interrupt_pending());
}

#[test]
fn blk_large_and_out_of_range_requests() {
    let disk = MemDisk::new(4096);
    disk.fill(0, &pattern(4096 * 512, 3));
    let (dev, mut drv) = blk(&disk);

    // 1 MiB in one request: 16 bounce-buffer chunks.
    let mut big = vec![0u8; 1 << 20];
    drv.read_blocks(100, &mut big).unwrap();
    assert_eq!(&big[..], &disk.contents()[100 * 512..100 * 512 + (1 << 20)]);

    let data = pattern(1 << 20, 99);
    drv.write_blocks(2000, &data).unwrap();
    assert_eq!(
        &disk.contents()[2000 * 512..2000 * 512 + (1 << 20)],
        &data[..]
    );

    // Past the end: IOERR, not a device failure.
    let mut buf = vec![0u8; 1024];
    assert!(drv.read_blocks(4095, &mut buf).is_err());
    assert!(drv.write_blocks(4095, &buf).is_err());
    assert!(!dev.borrow().needs_reset());
    drv.read_blocks(4094, &mut buf).unwrap();
}

#[test]
fn blk_non_blocking_multi_request() {
    let disk = MemDisk::new(256);
    disk.fill(0, &pattern(256 * 512, 11));
    let (_dev, mut drv) = blk(&disk);
    let mut reqs: Vec<(BlkReq, BlkResp, Vec<u8>)> = (0..4)
        .map(|_| (BlkReq::default(), BlkResp::default(), vec![0u8; 8 * 512]))
        .collect();
    let mut tokens = Vec::new();
    for (i, (req, resp, buf)) in reqs.iter_mut().enumerate() {
        // SAFETY: the buffers outlive the request and are completed below.
        let t = unsafe { drv.read_blocks_nb(i * 8, req, buf, resp) }.unwrap();
        tokens.push(t);
    }
    for (i, ((req, resp, buf), t)) in reqs.iter_mut().zip(tokens).enumerate() {
        assert!(drv.peek_used().is_some());
        // SAFETY: same buffers as in read_blocks_nb.
        unsafe { drv.complete_read_blocks(t, req, buf, resp) }.unwrap();
        assert_eq!(&buf[..], &disk.contents()[i * 8 * 512..(i + 1) * 8 * 512]);
    }
}

#[test]
fn blk_read_only_refuses_writes() {
    let disk = MemDisk::new(16).read_only();
    disk.fill(0, &[0xaa; 512]);
    let (dev, mut drv) = blk(&disk);
    assert!(drv.readonly());
    assert!(drv.write_blocks(0, &[0x55; 512]).is_err());
    assert_eq!(&disk.contents()[..512], &[0xaa; 512][..]);
    let mut buf = [0u8; 512];
    drv.read_blocks(0, &mut buf).unwrap();
    assert_eq!(buf, [0xaa; 512]);
    assert!(!dev.borrow().needs_reset());
}

#[test]
fn blk_backend_errors_become_ioerr_and_service_continues() {
    let disk = MemDisk::new(16);
    let (dev, mut drv) = blk(&disk);
    disk.set_failing(true);
    let mut buf = [0u8; 512];
    assert!(drv.read_blocks(0, &mut buf).is_err());
    assert!(drv.flush().is_err());
    disk.set_failing(false);
    drv.read_blocks(0, &mut buf).unwrap();
    assert!(!dev.borrow().needs_reset());
}

#[test]
fn console_echo_and_size() {
    let backend = MemConsole::new();
    let dev = device(Console::new(Box::new(backend.clone())));
    let mut con = VirtIOConsole::<TestHal, _>::new(TestTransport::new(&dev)).unwrap();
    let size = con.size().unwrap().unwrap();
    assert_eq!((size.columns, size.rows), (80, 25));

    con.send_bytes(b"hello, backplane").unwrap();
    assert_eq!(backend.take_output(), b"hello, backplane");

    // Echo: what the guest wrote comes back as input.
    backend.push_input(b"echo!");
    poll(&dev);
    let mut got = Vec::new();
    for _ in 0..100 {
        match con.recv(true).unwrap() {
            Some(c) => got.push(c),
            None => {
                poll(&dev);
                if got.len() == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(got, b"echo!");

    con.emergency_write(b'!').unwrap();
    assert_eq!(backend.take_output(), b"!");
}

#[test]
fn entropy_fills_buffers() {
    let dev = device(Rng::new(Box::new(MemEntropy::new(42))));
    let mut rng = VirtIORng::<TestHal, _>::new(TestTransport::new(&dev)).unwrap();
    let mut buf = [0u8; 64];
    let n = rng.request_entropy(&mut buf).unwrap();
    assert_eq!(n, 64);
    assert!(buf.iter().any(|&b| b != 0));
    let mut big = vec![0u8; 10000];
    let n = rng.request_entropy(&mut big).unwrap();
    assert!(n > 0 && n <= big.len());
}

#[test]
fn net_frames_both_ways() {
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let backend = MemNet::new(mac);
    let dev = device(Net::new(Box::new(backend.clone())));
    let mut net = VirtIONet::<TestHal, _, 16>::new(TestTransport::new(&dev), 2048).unwrap();
    assert_eq!(net.mac_address(), mac);

    let frame = pattern(1000, 5);
    let mut tx = net.new_tx_buffer(frame.len());
    tx.packet_mut().copy_from_slice(&frame);
    net.send(tx).unwrap();
    let sent = backend.take_frames();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, frame);

    for i in 0..40u8 {
        let f = pattern(60 + usize::from(i) * 30, i);
        backend.push_frame(&f);
        poll(&dev);
        let rx = net.receive().unwrap();
        assert_eq!(rx.packet(), &f[..]);
        net.recycle_rx_buffer(rx).unwrap();
    }
    assert_eq!(backend.pending_inbound(), 0);
}

#[test]
fn status_reset_by_driver() {
    let disk = MemDisk::new(8);
    let (dev, mut drv) = blk(&disk);
    let _ = drv.flush();
    let mut t = TestTransport::new(&dev);
    t.set_status(DeviceStatus::empty());
    assert_eq!(t.get_status(), DeviceStatus::empty());
    assert!(!dev.borrow().interrupt_pending());
}
