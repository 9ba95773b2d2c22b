module healthy

go 1.26
