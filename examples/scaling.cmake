# Scaling studies (issue 22): scaling_fit fits the seed papers' laws to a CSV of runs; scripts/sweep.py writes and
# runs a grid of examples/train runs and collects their final rows; scripts/plot_scaling.py draws both.
add_executable(scaling_fit scaling_fit.cpp)
target_link_libraries(scaling_fit PRIVATE vitscale::vitscale CLI11::CLI11)
vitscale_target_defaults(scaling_fit)

if(VITSCALE_BUILD_TESTS)
  set(_golden ${CMAKE_CURRENT_SOURCE_DIR}/../tests/golden/explore)
  # Synthetic runs from known laws (tests/golden/explore/make_scaling_runs.py: tiny a 5e4, b 0.40, c 0.14, d 0;
  # small 6e5, 0.45, 0.10, 2e13; base 8e6, 0.50, 0.07, 1.5e14; noise sd 0.004). The recovered values below (tiny
  # b 0.362 +- 0.079, c 0.120 +- 0.031; small b 0.461, c 0.093, d 2.23e13; base b 0.469, c 0.059, d 1.37e14) are
  # this data's least-squares fit, and every true parameter lies inside its printed 95% interval; the envelope
  # passes from tiny to small to base.
  add_test(NAME examples.scaling_fit
           COMMAND scaling_fit ${_golden}/scaling_runs.csv --x compute --y error --by model
                   --out scaling_fit_curves.csv --params scaling_fit_params.csv)
  set_tests_properties(examples.scaling_fit PROPERTIES PASS_REGULAR_EXPRESSION
    "24 runs in 3 groups \\(by model\\).*tiny: error = a\\*\\(compute \\+ d\\)\\^\\(-b\\) \\+ c, 8 points, 4 degrees of freedom.*  b = 0\\.362[0-9]* +\\+- 0\\.078[0-9]* .*  c = 0\\.120[0-9]* +\\+- 0\\.03[01][0-9]* .*small: .*  b = 0\\.461[0-9]* +\\+- 0\\.060[0-9]* .*  c = 0\\.093[0-9]* .*  d = 2\\.23[0-9]*e\\+13 .*base: .*  b = 0\\.468[0-9]* .*  c = 0\\.058[0-9]* .*  d = 1\\.36[0-9]*e\\+14 .*from compute = 4\\.915e\\+12 +tiny is compute-optimal.*small is compute-optimal.*base is compute-optimal.*beta = -0\\.[0-9]+.*curves in scaling_fit_curves.csv")
  set_tests_properties(examples.scaling_fit PROPERTIES FIXTURES_SETUP scaling_curves)
  # The figures from those curves, where Debian's python3 has matplotlib (python3-matplotlib).
  find_program(VITSCALE_SYSTEM_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(VITSCALE_SYSTEM_PYTHON3)
    execute_process(COMMAND ${VITSCALE_SYSTEM_PYTHON3} -c "import matplotlib" RESULT_VARIABLE _no_matplotlib
                    OUTPUT_QUIET ERROR_QUIET)
    if(_no_matplotlib EQUAL 0)
      add_test(NAME examples.plot_scaling_law
               COMMAND ${VITSCALE_SYSTEM_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/../scripts/plot_scaling.py law
                       scaling_fit_curves.csv --params scaling_fit_params.csv --out plot_scaling_law)
      set_tests_properties(examples.plot_scaling_law PROPERTIES FIXTURES_REQUIRED scaling_curves
                           PASS_REGULAR_EXPRESSION "wrote plot_scaling_law.png and plot_scaling_law.svg")
    endif()
  endif()
  # Bad input: a missing column, a value that is not a number (with its line), too few points for a law.
  add_test(NAME examples.scaling_fit_missing_column
           COMMAND scaling_fit ${_golden}/scaling_runs.csv --y loss)
  set_tests_properties(examples.scaling_fit_missing_column PROPERTIES PASS_REGULAR_EXPRESSION
    "scaling_fit: vitscale: .*scaling_runs.csv: no column 'loss' \\(--y\\); its columns are: model, images, compute, error")
  add_test(NAME examples.scaling_fit_not_a_number
           COMMAND scaling_fit ${_golden}/scaling_runs_bad_value.csv --by model)
  set_tests_properties(examples.scaling_fit_not_a_number PROPERTIES PASS_REGULAR_EXPRESSION
    "scaling_fit: vitscale: .*scaling_runs_bad_value.csv:5: column 'error' is 'n/a', not a finite number")
  add_test(NAME examples.scaling_fit_too_few
           COMMAND scaling_fit ${_golden}/scaling_runs_too_few.csv --by model)
  set_tests_properties(examples.scaling_fit_too_few PROPERTIES PASS_REGULAR_EXPRESSION
    "scaling_fit: vitscale: group 'tiny': .*fit_saturating_power_law: needs at least 5 points and 4 distinct values of compute .*\\(got 4 points, 4 distinct\\)")

  # The sweep runner: a dry run writes the command lines, the Slurm array script and the mpirun app file.
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    set(_sweep ${CMAKE_CURRENT_SOURCE_DIR}/../scripts/sweep.py)
    add_test(NAME examples.sweep_dry_run
             COMMAND ${Python3_EXECUTABLE} ${_sweep} plan sweep_dry_run --train $<TARGET_FILE_DIR:scaling_fit>/train
                     --steps 100,400 --seeds 0,1 --batch 64 --threads 2 --extra=--evaluations=1 --slurm --mpirun --print --replan)
    set_tests_properties(examples.sweep_dry_run PROPERTIES PASS_REGULAR_EXPRESSION
      "4 runs \\(1 shape x 2 budgets x 2 seeds\\).*train --steps 100 --batch 64 --seed 0 --threads 2 --evaluations=1 --warmup 10 --csv [^ ]*sweep_dry_run/fmnist_s100_seed0/metrics.csv --checkpoint [^ ]*sweep_dry_run/fmnist_s100_seed0/model.safetensors --train-checkpoint [^ ]*sweep_dry_run/fmnist_s100_seed0/state.safetensors.*fmnist_s400_seed1/metrics.csv.*#SBATCH --array=0-3.*sweep.py run [^ ]*sweep_dry_run --only \"\\$SLURM_ARRAY_TASK_ID\".*-np 1 .*sweep.py run [^ ]*sweep_dry_run --only 3")
    # collect: the final rows of three fake runs (one of them unfinished: left out, and said so), with compute from
    # the grid's flops_per_image (1.7e8, a stand-in: the metrics have no compute column).
    add_test(NAME examples.sweep_collect
             COMMAND ${Python3_EXECUTABLE} ${_sweep} collect ${_golden}/sweep_runs --out sweep_collected.csv --print)
    set_tests_properties(examples.sweep_collect PROPERTIES PASS_REGULAR_EXPRESSION
      "fmnist_s80_seed0: unfinished \\(step 40 of 80\\), left out.*run,model,steps,seed,batch,train_size,epoch,step,train_loss,test_accuracy,[a-z_,]*,error,images,compute.fmnist_s20_seed0,fmnist,20,0,32,0,1,20,1\\.6,0\\.7,[0-9.,]*,0\\.3,640,1\\.088e\\+11.fmnist_s40_seed0,fmnist,40,0,32,0,1,40,1\\.2,0\\.8,[0-9.,]*,0\\.2,1280,2\\.176e\\+11.2 runs in sweep_collected.csv \\(1 unfinished left out\\)")
    # A real sweep over the --model ladder in miniature: two shapes, 3 steps and (xs's own budget, --shape-steps)
    # 2 steps, run here and collected; the compute column is the metrics CSV's own (the accounting's FLOPs x images
    # seen: no flops_per_image given), so it sits before error and images.
    find_program(VITSCALE_SH sh REQUIRED)
    if(TARGET train)
      add_test(NAME examples.sweep_ladder
               COMMAND ${VITSCALE_SH} -c "rm -rf sweep_ladder && \"$0\" \"$1\" plan sweep_ladder --train \"$2\" --shape 'xxs=--model xxs' --shape 'xs=--model xs' --steps 3 --shape-steps xs=2 --batch 16 --threads 2 --extra=--evaluations=1 && \"$0\" \"$1\" run sweep_ladder && \"$0\" \"$1\" collect sweep_ladder --print"
                       ${Python3_EXECUTABLE} ${_sweep} $<TARGET_FILE:train>)
      set_tests_properties(examples.sweep_ladder PROPERTIES PASS_REGULAR_EXPRESSION
        "2 runs \\(2 shapes x 1 budget each x 1 seed\\).*xxs_s3_seed0: test accuracy [0-9.]+ after 3 steps.*xs_s2_seed0: test accuracy [0-9.]+ after 2 steps.*run,model,steps,seed,batch,train_size,epoch,step,[a-z_,]*,images_seen,compute,error,images.xxs_s3_seed0,xxs,3,0,16,0,1,3,[0-9.e+,-]*,48,[1-9][0-9]*,[0-9.]+,48.xs_s2_seed0,xs,2,0,16,0,1,2,[0-9.e+,-]*,32,[1-9][0-9]*,[0-9.]+,32.2 runs in .*sweep_ladder/runs.csv"
        ENVIRONMENT "OMP_NUM_THREADS=2;OMP_PROC_BIND=false;OMP_WAIT_POLICY=PASSIVE")
    endif()
  endif()
endif()
