#include "textflag.h"

// func Scale(x int64) int64
TEXT ·Scale(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), AX
	SHLQ $1, AX
	MOVQ AX, ret+8(FP)
	RET

// func Outer() int64
// Calls Inner with R14 not holding the goroutine, as ABI0 code may (only Go's register ABI
// keeps it there): whoever reads g from R14 inside Inner cannot read it.
TEXT ·Outer(SB), NOSPLIT, $0-8
	MOVQ R14, R12
	MOVQ $8, R14
	CALL ·Inner(SB)
	MOVQ R12, R14
	MOVQ AX, ret+0(FP)
	RET

// func Inner() int64
TEXT ·Inner(SB), NOSPLIT, $0-8
	MOVQ $1, AX
	RET
