"""`retina-tfx compile-kfp`: the pipeline as a Kubeflow Pipelines v2 / Vertex AI PipelineJob."""
from cli import console, run
from pipeline import configs, kubeflow_runner


def command(args) -> int:
  try:
    beam = configs.component_beam_args(configs.BeamSettings(
        runner=args.beam_runner, workers=args.beam_workers, project=args.gcp_project,
        region=args.gcp_region, temp_location=args.temp_location, flink_master=args.flink_master,
        image=args.image))
    gpu = kubeflow_runner.GpuRequest(args.gpu_type, args.gpu_count) if args.gpu_type else None
    path = kubeflow_runner.compile_pipeline(
        args.image, args.pipeline_root, args.data, args.output,
        run.profile_of(args), serving_dir=args.serving_dir, gpu=gpu,
        component_beam_args=beam, eval_count=args.eval_count, split_seed=args.split_seed,
        base_model=args.base_model)
  except ValueError as error:
    raise console.CommandError(str(error)) from error
  print(f'wrote {path}: submit it with the KFP client or to Vertex AI Pipelines (README, '
        '"Deploy to Kubeflow")')
  return 0
