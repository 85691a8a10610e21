/* Functions whose first instructions are written out (assembly), to check where probe puts the
 * entry probe and that what its program reads there is the state of the function's start.
 *   movabs_push(x): movabs $..,%rax; push %rbp, as Redis's zmalloc: entry on the push
 *   clobbers_arg(x): lea 1(%rdi),%rax; xor %edi,%edi; push %rbp: argdist on x stays on the
 *     first instruction (x is in no register by the push); latency enters on the push
 *   copies_arg(x): mov %rdi,%rcx; xor %edi,%edi; push %rbp: argdist reads x from RCX there
 *   stack_then_call(x): sub $8,%rsp; call twice: argdist enters on the call, latency (whose
 *     frame depth and uretprobe need the entry's SP) on the sub
 * Each is called with x = 0..N-1 (N = argv[1], default 1000); prints `NAME calls: N`. */
#include <stdio.h>
#include <stdlib.h>

__asm__(".text\n"
        ".globl movabs_push\n.type movabs_push,@function\nmovabs_push:\n"
        "  movabs $0x7ffffffffffffffe, %rax\n  push %rbp\n  lea 1(%rdi), %rax\n  pop %rbp\n  ret\n"
        ".size movabs_push, .-movabs_push\n"
        ".globl clobbers_arg\n.type clobbers_arg,@function\nclobbers_arg:\n"
        "  lea 1(%rdi), %rax\n  xor %edi, %edi\n  push %rbp\n  pop %rbp\n  ret\n"
        ".size clobbers_arg, .-clobbers_arg\n"
        ".globl copies_arg\n.type copies_arg,@function\ncopies_arg:\n"
        "  mov %rdi, %rcx\n  xor %edi, %edi\n  push %rbp\n  mov %rcx, %rax\n  pop %rbp\n  ret\n"
        ".size copies_arg, .-copies_arg\n"
        ".globl twice\n.type twice,@function\ntwice:\n  lea (%rdi,%rdi), %rax\n  ret\n.size twice, .-twice\n"
        ".globl stack_then_call\n.type stack_then_call,@function\nstack_then_call:\n"
        "  sub $8, %rsp\n  call twice\n  add $8, %rsp\n  ret\n"
        ".size stack_then_call, .-stack_then_call\n");

long movabs_push(long), clobbers_arg(long), copies_arg(long), stack_then_call(long);

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000, sum = 0;
    struct { const char *name; long (*fn)(long); } fns[] = {
        {"movabs_push", movabs_push}, {"clobbers_arg", clobbers_arg},
        {"copies_arg", copies_arg}, {"stack_then_call", stack_then_call},
    };
    for (unsigned f = 0; f < sizeof fns / sizeof fns[0]; f++) {
        for (long i = 0; i < n; i++) sum += fns[f].fn(i);
        printf("%s calls: %ld\n", fns[f].name, n);
    }
    return sum == 42;
}
