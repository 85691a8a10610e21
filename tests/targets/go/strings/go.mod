module stringstarget

go 1.19
