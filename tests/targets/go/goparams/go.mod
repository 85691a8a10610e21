module goparams

go 1.19
