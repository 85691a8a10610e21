#include "textflag.h"

// func Scale(x int64) int64
TEXT ·Scale(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), AX
	SHLQ $1, AX
	MOVQ AX, ret+8(FP)
	RET
