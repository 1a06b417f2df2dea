from gpuhealth.cli import main

main()
