module httpservertarget

go 1.19
