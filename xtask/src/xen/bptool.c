/* bptool: Backplane's in-guest benchmark tool (static aarch64, built by `cargo xtask bench xen`).
 *
 *   bptool mmio <phys> <count>                 ns per 32-bit `ldr` of <phys> through /dev/mem
 *   bptool randread <dev> <count> <range>      4 KiB random reads, QD1, O_DIRECT
 *   bptool seq <dev> <read|write> <bytes> <bs> <direct|buffered>
 *
 * Results are one `BPTOOL key=value ...` line each (short: Xen splits long domU lines).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int fail(const char *what)
{
    printf("BPTOOL error=%s errno=%d (%s)\n", what, errno, strerror(errno));
    return 1;
}

/* Exactly one ldr of a 32-bit register. */
static inline uint32_t ldr32(const volatile uint32_t *p)
{
    uint32_t v;
    __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(p) : "memory");
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int mmio(uint64_t phys, long count)
{
    int fd = open("/dev/mem", O_RDONLY | O_SYNC);
    if (fd < 0)
        return fail("open-devmem");
    uint64_t page = phys & ~(uint64_t)0xfff;
    void *m = mmap(NULL, 0x1000, PROT_READ, MAP_SHARED, fd, (off_t)page);
    if (m == MAP_FAILED)
        return fail("mmap-devmem");
    const volatile uint32_t *reg = (const volatile uint32_t *)((char *)m + (phys - page));
    const volatile uint32_t *devid = (const volatile uint32_t *)((char *)m + (phys - page) + 8);
    uint32_t first = ldr32(reg), id = ldr32(devid);
    /* Tight loop: the mean. */
    uint32_t acc = 0;
    uint64_t t0 = now_ns();
    for (long i = 0; i < count; i++)
        acc ^= ldr32(reg);
    uint64_t t1 = now_ns();
    /* One read per sample: the median (includes one clock_gettime, reported as timer_ns). */
    long n = count < 2000 ? count : 2000;
    uint64_t *s = calloc((size_t)n, sizeof *s), *e = calloc((size_t)n, sizeof *e);
    if (!s || !e)
        return fail("calloc");
    for (long i = 0; i < n; i++) {
        uint64_t a = now_ns();
        acc ^= ldr32(reg);
        s[i] = now_ns() - a;
    }
    for (long i = 0; i < n; i++) {
        uint64_t a = now_ns();
        e[i] = now_ns() - a;
    }
    qsort(s, (size_t)n, sizeof *s, cmp_u64);
    qsort(e, (size_t)n, sizeof *e, cmp_u64);
    (void)acc;
    printf("BPTOOL mmio addr=0x%llx val=0x%x dev=%u mean_ns=%llu median_ns=%llu timer_ns=%llu\n",
           (unsigned long long)phys, first, id, (unsigned long long)((t1 - t0) / (uint64_t)count),
           (unsigned long long)s[n / 2], (unsigned long long)e[n / 2]);
    return 0;
}

static int randread(const char *dev, long count, uint64_t range)
{
    int fd = open(dev, O_RDONLY | O_DIRECT);
    if (fd < 0)
        return fail("open-dev");
    void *buf;
    if (posix_memalign(&buf, 4096, 4096))
        return fail("memalign");
    uint64_t blocks = range / 4096, x = 0x2545F4914F6CDD1Dull;
    uint64_t t0 = now_ns();
    for (long i = 0; i < count; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        off_t off = (off_t)(((x >> 33) % blocks) * 4096);
        if (pread(fd, buf, 4096, off) != 4096)
            return fail("pread");
    }
    uint64_t dt = now_ns() - t0;
    printf("BPTOOL randread count=%ld iops=%llu us_per_io=%llu\n", count,
           (unsigned long long)((uint64_t)count * 1000000000ull / dt),
           (unsigned long long)(dt / (uint64_t)count / 1000));
    close(fd);
    return 0;
}

static int seq(const char *dev, int write, uint64_t bytes, size_t bs, int direct)
{
    int fd = open(dev, (write ? O_WRONLY : O_RDONLY) | (direct ? O_DIRECT : 0));
    if (fd < 0)
        return fail("open-dev");
    if (!write && !direct)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    void *buf;
    if (posix_memalign(&buf, 4096, bs))
        return fail("memalign");
    memset(buf, 0xa5, bs);
    uint64_t t0 = now_ns();
    for (uint64_t off = 0; off < bytes; off += bs) {
        ssize_t r = write ? pwrite(fd, buf, bs, (off_t)off) : pread(fd, buf, bs, (off_t)off);
        if (r != (ssize_t)bs)
            return fail(write ? "pwrite" : "pread");
    }
    if (write && fsync(fd))
        return fail("fsync");
    uint64_t dt = now_ns() - t0;
    close(fd);
    printf("BPTOOL seq op=%s mode=%s bytes=%llu bs=%zu ms=%llu kbps=%llu\n", write ? "write" : "read",
           direct ? "direct" : "buffered", (unsigned long long)bytes, bs,
           (unsigned long long)(dt / 1000000), (unsigned long long)(bytes * 1000000ull / dt));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "mmio"))
        return mmio(strtoull(argv[2], NULL, 0), atol(argv[3]) > 0 ? atol(argv[3]) : 1);
    if (argc == 5 && !strcmp(argv[1], "randread"))
        return randread(argv[2], atol(argv[3]) > 0 ? atol(argv[3]) : 1, strtoull(argv[4], NULL, 0));
    if (argc == 7 && !strcmp(argv[1], "seq"))
        return seq(argv[2], !strcmp(argv[3], "write"), strtoull(argv[4], NULL, 0),
                   (size_t)strtoull(argv[5], NULL, 0), !strcmp(argv[6], "direct"));
    fprintf(stderr, "usage: bptool mmio <phys> <count> | randread <dev> <count> <range> |"
                    " seq <dev> <read|write> <bytes> <bs> <direct|buffered>\n");
    return 2;
}
