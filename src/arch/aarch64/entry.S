/*
 * Image header, entry, self-relocation, EL2 -> EL1 drop and the exception
 * vectors. Everything here runs before Rust can: no stack, MMU off.
 */
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry           /* code0 */
    .word   0                       /* code1 */
    .quad   0                       /* text_offset */
    .quad   __image_size            /* image_size, BSS and stacks included */
    .quad   0xa                     /* flags: LE, 4 KiB pages, anywhere in RAM */
    .quad   0, 0, 0                 /* res2..res4 */
    .word   0x644d5241              /* "ARM\x64" */
    .word   0                       /* res5 */

.text
primary_entry:
    mov     x19, x0                 /* DTB pointer from the loader */
    adrp    x20, __image_start      /* where we actually run */
    add     x20, x20, :lo12:__image_start

    /* Apply R_AARCH64_RELATIVE relocations: *(base + off) = base + addend. */
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
    mov     x21, #0                 /* count of relocations we cannot apply */
1:  cmp     x1, x2
    b.hs    3f
    ldp     x3, x4, [x1], #16
    ldr     x5, [x1], #8
    cmp     w4, #1027               /* R_AARCH64_RELATIVE */
    b.ne    2f
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       1b
2:  add     x21, x21, #1
    b       1b
3:
    mrs     x0, CurrentEL
    lsr     x0, x0, #2
    cmp     x0, #2
    b.ne    in_el1

    /* At EL2 with no hypervisor: configure EL2 minimally and drop to EL1. */
    mov     x22, #2                 /* remember the entry EL for the report */
    mov     x0, #(1 << 31)          /* HCR_EL2.RW: EL1 is AArch64, nothing trapped */
    msr     hcr_el2, x0
    mov     x0, #3                  /* CNTHCTL_EL2: EL1 may use the physical counter/timer */
    msr     cnthctl_el2, x0
    msr     cntvoff_el2, xzr
    mov     x0, #0x33ff             /* CPTR_EL2: no FP/SIMD traps */
    msr     cptr_el2, x0
    msr     vttbr_el2, xzr
    mrs     x0, midr_el1
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    mrs     x0, id_aa64pfr0_el1     /* GICv3 system registers present? */
    ubfx    x0, x0, #24, #4
    cbz     x0, 4f
    mrs     x0, S3_4_C12_C9_5       /* ICC_SRE_EL2 */
    orr     x0, x0, #0x1            /* SRE */
    orr     x0, x0, #0x8            /* Enable: EL1 may use SRE */
    msr     S3_4_C12_C9_5, x0
    isb
4:  ldr     x0, =0x30d00800         /* SCTLR_EL1 RES1 bits, MMU off */
    msr     sctlr_el1, x0
    mov     x0, #0x3c5              /* EL1h, DAIF masked */
    msr     spsr_el2, x0
    adr     x0, in_el1_from_el2
    msr     elr_el2, x0
    eret

in_el1:
    mov     x22, #1
in_el1_from_el2:
    mov     x0, #(3 << 20)          /* CPACR_EL1.FPEN: Rust may use SIMD registers */
    msr     cpacr_el1, x0
    isb

    /* Exception stack on SP_EL1, thread stack on SP_EL0: an overflow of the
     * thread stack faults into the guard page and is reported on SP_EL1. */
    msr     spsel, #1
    adrp    x0, __el1_stack_top
    add     x0, x0, :lo12:__el1_stack_top
    mov     sp, x0
    msr     spsel, #0
    adrp    x0, __stack_top
    add     x0, x0, :lo12:__stack_top
    mov     sp, x0

    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
5:  cmp     x0, x1
    b.hs    6f
    stp     xzr, xzr, [x0], #16
    b       5b
6:
    adrp    x0, exception_vectors
    add     x0, x0, :lo12:exception_vectors
    msr     vbar_el1, x0
    isb

    mov     x0, x19                 /* dtb */
    mov     x1, x20                 /* load address */
    mov     x2, x21                 /* unapplied relocations */
    mov     x3, x22                 /* entry exception level */
    bl      rust_entry
7:  wfe
    b       7b

/* ---- exception vectors ------------------------------------------------- */

.macro vector kind
.balign 0x80
    sub     sp, sp, #(34 * 8)
    stp     x0, x1, [sp, #(0 * 8)]
    mov     x0, #\kind
    b       exception_common
.endm

exception_common:
    stp     x2, x3, [sp, #(2 * 8)]
    stp     x4, x5, [sp, #(4 * 8)]
    stp     x6, x7, [sp, #(6 * 8)]
    stp     x8, x9, [sp, #(8 * 8)]
    stp     x10, x11, [sp, #(10 * 8)]
    stp     x12, x13, [sp, #(12 * 8)]
    stp     x14, x15, [sp, #(14 * 8)]
    stp     x16, x17, [sp, #(16 * 8)]
    stp     x18, x19, [sp, #(18 * 8)]
    stp     x20, x21, [sp, #(20 * 8)]
    stp     x22, x23, [sp, #(22 * 8)]
    stp     x24, x25, [sp, #(24 * 8)]
    stp     x26, x27, [sp, #(26 * 8)]
    stp     x28, x29, [sp, #(28 * 8)]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #(30 * 8)]
    mrs     x1, spsr_el1
    str     x1, [sp, #(32 * 8)]
    mov     x1, sp
    bl      exception_entry
    ldp     x30, x0, [sp, #(30 * 8)]
    ldr     x1, [sp, #(32 * 8)]
    msr     elr_el1, x0
    msr     spsr_el1, x1
    ldp     x0, x1, [sp, #(0 * 8)]
    ldp     x2, x3, [sp, #(2 * 8)]
    ldp     x4, x5, [sp, #(4 * 8)]
    ldp     x6, x7, [sp, #(6 * 8)]
    ldp     x8, x9, [sp, #(8 * 8)]
    ldp     x10, x11, [sp, #(10 * 8)]
    ldp     x12, x13, [sp, #(12 * 8)]
    ldp     x14, x15, [sp, #(14 * 8)]
    ldp     x16, x17, [sp, #(16 * 8)]
    ldp     x18, x19, [sp, #(18 * 8)]
    ldp     x20, x21, [sp, #(20 * 8)]
    ldp     x22, x23, [sp, #(22 * 8)]
    ldp     x24, x25, [sp, #(24 * 8)]
    ldp     x26, x27, [sp, #(26 * 8)]
    ldp     x28, x29, [sp, #(28 * 8)]
    add     sp, sp, #(34 * 8)
    eret

/* kind = group * 4 + type; groups: 0 EL1t, 1 EL1h, 2 lower A64, 3 lower A32;
 * types: 0 sync, 1 irq, 2 fiq, 3 serror */
.balign 0x800
exception_vectors:
    vector 0
    vector 1
    vector 2
    vector 3
    vector 4
    vector 5
    vector 6
    vector 7
    vector 8
    vector 9
    vector 10
    vector 11
    vector 12
    vector 13
    vector 14
    vector 15
